#!/bin/bash
# Build the offline SGLang 0.5.17 bundle for the lent GPU machine (torch 2.11.0+cu130, Python 3.12,
# no network there). Run on a machine with PyPI, from the project root; needs pip, unzip, xz, strip.
# Project copy of ../shared/gpu/build_bundle.sh (the recipe of /work/shared/gpu/README.md), plus:
#   - the project's own wheel is built into .carry/whl (old sglang_sage_ext wheels removed first);
#   - the nvcc JIT cache (3 MB binary) is NOT kept in the repo: it is copied at build time from
#     $JITCACHE (default ../shared/gpu/jitcache_sm90a.tar.xz); without it the bundle still works,
#     the first server start on a fresh machine is just ~20 s slower;
#   - the SGLang site tarball is reused when it exists (REBUILD_SITE=1 forces a rebuild), so
#     re-running after a code change only refreshes scripts and the project wheel (~10 s).
#   bash bench/gpu/build_bundle.sh      -> .carry/sgl/site.tar.xz (~33 MB, 182 MB unpacked)
#                                          .carry/extra1/flashinfer_data.tar.xz (~4.7 MB)
#                                          .carry/whl/sageattention-1.0.6-py3-none-any.whl
#                                          .carry/jit/jitcache.tar.xz (nvcc JIT cache for sm90a, ~3 MB)
#                                          .carry/scripts/ (these scripts)
#                                          .carry/whl/sglang_sage_ext-*.whl (this project)
# On the device: `source .carry/scripts/setup_site.sh` unpacks the bundle into /tmp/site, sets
# PYTHONPATH, and pip-installs .carry/whl/*.whl into the interpreter's site-packages (so .pth files run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(pwd); W=${WHEELDIR:-/tmp/bundle_wheels}; S=${STAGE:-/tmp/bundle_site}
PIP=${PIP:-python3 -m pip}
JITCACHE=${JITCACHE:-$ROOT/../shared/gpu/jitcache_sm90a.tar.xz}
[ -f pyproject.toml ] && [ -d sglang_sage_ext ] || { echo "run from the project root"; exit 1; }
mkdir -p "$W" .carry/sgl .carry/extra1 .carry/whl .carry/jit .carry/scripts
rm -rf .carry/scripts/*
cp -r "$HERE"/*.sh "$HERE"/*.py "$HERE"/steps "$HERE"/local_import_check .carry/scripts/
if [ -f "$JITCACHE" ]; then cp "$JITCACHE" .carry/jit/jitcache.tar.xz
else echo "[bundle] WARNING: no JIT cache at $JITCACHE (first server start ~20 s slower)"; fi
# the project's wheel (rebuilt on every run)
rm -f .carry/whl/sglang_sage_ext-*.whl
$PIP wheel -q --no-deps -w .carry/whl .
# the project's own runtime dependencies (wrapt is not known to be in the device image; the
# others are small): unpacked into /tmp/site by setup_site.sh (`.carry/extra*/*.tar.xz`)
if [ ! -f .carry/extra2/sage_ext_deps.tar.xz ]; then
  D=$(mktemp -d); mkdir -p .carry/extra2 "$D/w" "$D/s"
  for p in "wrapt>=2" "importlib-metadata>=6" zipp "click>=8.1"; do
    $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$D/w" "$p"
  done
  for w in "$D"/w/*.whl; do (cd "$D/s" && unzip -q -o "$w"); done
  tar -cf - -C "$D/s" . | xz -T0 -6 > .carry/extra2/sage_ext_deps.tar.xz
  ls "$D/w"; rm -rf "$D"
fi
if [ -f .carry/sgl/site.tar.xz ] && [ -f .carry/extra1/flashinfer_data.tar.xz ] \
   && [ -f .carry/whl/sageattention-1.0.6-py3-none-any.whl ] && [ "${REBUILD_SITE:-0}" != 1 ]; then
  echo "[bundle] reusing .carry/sgl/site.tar.xz (REBUILD_SITE=1 rebuilds it)"
  ls -la .carry/sgl .carry/extra1 .carry/extra2 .carry/whl .carry/jit; du -sh .carry; exit 0
fi
rm -rf "$S"; mkdir -p "$S"
PLAT="--platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64"
# Exactly what was verified on the device (2026-11-21). Not carried on purpose: everything in the
# image (torch, triton, numpy, pandas, pyarrow, aiohttp, requests, httpx, anyio, h11, psutil, pillow,
# uvloop, prometheus-client, xxhash, einops, ninja, scipy, sentencepiece, tiktoken, huggingface-hub,
# safetensors, torchvision, cuda-bindings, nvidia-* ...) and the sglang requirements that the
# Llama + triton-attention server path never imports (see the report).
PKGS="sglang==0.5.17 sglang-kernel==0.4.5 flashinfer-python==0.6.15.post1
transformers==5.12.1 tokenizers==0.22.2
xgrammar==0.2.1 apache-tvm-ffi==0.1.11
pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
fastapi==0.128.0 starlette==0.50.0 uvicorn==0.54.0 python-multipart==0.0.34
pyzmq==27.3.0 orjson==3.13.0 msgspec==0.22.0 pybase64==1.5.1 setproctitle==1.3.8 partial-json-parser==0.2.1.1.post7
openai==2.6.1 jiter==0.19.0 distro==1.9.0 sniffio==1.3.1
compressed-tensors==0.20.0 loguru==0.7.3 gguf==0.19.0
jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
soundfile==0.13.1 cffi==2.1.1 pycparser==3.12
datasets==5.2.0 multiprocess==0.70.19 dill==0.4.1"
for p in $PKGS; do
  $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d "$W" "$p"
done
$PIP download -q --no-deps --only-binary=:all: -d .carry/whl sageattention==1.0.6
cd "$S"
for w in "$W"/*.whl; do
  case "$(basename $w)" in
    sglang_kernel-*) unzip -q -o "$w" -x 'sgl_kernel/flash_ops.abi3.so' 'sgl_kernel/infllm_ops*' 'sgl_kernel/flashmla_ops*' 'sgl_kernel/sm100/*' ;;
    flashinfer_python-*) unzip -q -o "$w" ;;
    *) unzip -q -o "$w" ;;
  esac
done
# sglang: drop the Rust server/gRPC/multimodal native cores (only used with SGLANG_RUST_SERVER,
# --grpc-port, Rust multimodal preprocessing) and the diffusion package.
rm -f sglang/srt/server/_core*.so sglang/srt/grpc/_core*.so sglang/srt/multimodal/_core*.so
rm -rf sglang/multimodal_gen tools
# xgrammar: drop the static library and the debug info (53 MB -> 2.2 MB .so)
rm -rf xgrammar/lib xgrammar/include; strip --strip-unneeded xgrammar/libxgrammar_bindings.so
# flashinfer's JIT sources travel as a separate tarball (rmsnorm in sgl_kernel 0.4.5 JIT-builds them)
tar -cf - flashinfer/data | xz -T0 -8 > "$ROOT/.carry/extra1/flashinfer_data.tar.xz"
rm -rf flashinfer/data
# IPython stub: sglang/utils.py imports IPython.display at module level for notebook helpers only.
mkdir -p IPython
echo "# offline stub: only IPython.display.HTML/display are imported (sglang/utils.py)" > IPython/__init__.py
cat > IPython/display.py <<'PY'
class HTML:
    def __init__(self, data=None, *a, **k): self.data = data
    def __repr__(self): return str(self.data)
def display(*objs, **k):
    for o in objs: print(o)
PY
find . -name __pycache__ -type d -prune -exec rm -rf {} +
tar -cf - . | xz -T0 -8 > "$ROOT/.carry/sgl/site.tar.xz"
cd "$ROOT"; ls -la .carry/sgl .carry/extra1 .carry/whl .carry/jit; du -sh "$S"; du -sh .carry
