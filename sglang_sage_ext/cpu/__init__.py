"""Running SGLang on a machine without a GPU, for smoke tests and CI (a runtime module).

`shims` makes SGLang releases import and serve on CPU torch (stand-ins for CUDA-only imports,
installed in spawned processes through an env-gated `.pth`); `tiny_model` writes a small
random Llama that SGLang can load. `sglang-sage demo` on CPU and the test suite use both.
CPU numbers are smoke tests, never measurements.
"""
