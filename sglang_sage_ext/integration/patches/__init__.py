"""One module per patch point; each `apply(module) -> status string` is idempotent."""

#: Set on every object this package wraps or registers, so a second apply is a no-op.
MARKER = "_sglang_sage_ext_patched"
