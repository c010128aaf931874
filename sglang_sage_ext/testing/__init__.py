"""Test helpers for CPU-only CI (import-time shims, a tiny local model); not used at runtime."""
