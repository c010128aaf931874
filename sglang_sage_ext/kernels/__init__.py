"""GPU code only: the Sage attention kernels and their launchers.

`paged_sage` is the project's Triton kernel (INT8 Q·K, FP16/FP8 P·V, bottom-right causal mask
over a paged prefix); `sage_ops` calls it (and SageAttention 1.0.6's `sageattn_varlen`) on
SGLang's extend-kernel arguments. Importable and testable without SGLang.
"""
