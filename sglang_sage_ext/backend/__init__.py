"""The `sage_attn` attention backend: routing each extend batch to Sage or the exact path.

`sage_backend` is the backend object SGLang calls; `fallback` is the decision table (why a
batch cannot run Sage), `stats` counts and logs each reason once. Nothing here imports
`sglang_sage_ext.integration`: what the backend needs of SGLang's release is passed in.
"""
