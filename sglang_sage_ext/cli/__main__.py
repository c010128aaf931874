"""`python -m sglang_sage_ext.cli` runs `sglang-sage`."""

from sglang_sage_ext.cli.main import main

if __name__ == "__main__":
    main()
