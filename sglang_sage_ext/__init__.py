"""sglang-sage-ext: SageAttention's 8-bit attention as the `sage_attn` backend of an unmodified SGLang.

This module is imported by the `.pth` bootstrap in every Python process, so it must stay tiny:
no imports here. The real work lives in `_bootstrap` (hooks), `patches` (patch points),
`compat` (release differences), `backend` (the attention backend) and `cli` (`sglang-sage`).
"""

__version__ = "0.1.0"
