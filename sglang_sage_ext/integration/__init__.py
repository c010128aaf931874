"""Integration with SGLang: everything that knows SGLang's internals.

`hooks` registers one wrapt post-import hook per patch point (`patches/`, one module each);
`compat` turns every release difference into a named flag; `native` picks the best native
backend of this GPU and release; `factory` builds `sage_attn` for a ModelRunner; `plugin` is
SGLang's own entry point (0.5.11+). Imports point down only: to `backend/` and `kernels/`.
"""
