"""sglang-sage-ext: SageAttention 8-bit attention as SGLang's `sage_attn` attention backend.

This module is imported by the `.pth` bootstrap in every Python process, so it must stay tiny:
no imports here. The real work lives in `_bootstrap` (hooks), `patches` (patch points),
`compat` (release differences), `backend` (the attention backend) and `cli` (`sglang-sage`).
"""

__version__ = "0.1.0"
