"""`sglang-sage`: doctor, demo and bench (`main` is the click group)."""
