#!/usr/bin/env bash
# A dry run, on this CPU machine, of the GPU run's one command (benchmarks/gpu_run.sh) the way the GPU machine
# runs it: a "system" of torch, torchvision, lightning, timm and transformers only (no kornia, no lightly),
# then gpu_run.sh installing the carried wheels (build/gpu-wheels) with --no-index --no-deps into a folder on
# PYTHONPATH, run by a venv python that sees that system (the GPU machine's python3 is itself a venv's),
# then `gpu.py --device cpu --quick`, so that every part runs, lightly's half included.
# A wheel the GPU machine would lack, or an import that only works beside the project's own venv, fails here.
#
#     make gpu-dry-run          # or: bash benchmarks/gpu_dry_run.sh; about 5 minutes once the downloads are done
#
# What differs from the GPU machine, and why:
# - python3.11, not 3.12 (the only torch CPU wheel at hand here is cp311), so the one binary wheel among the
#   carried ones, kornia_rs, is swapped for its cp311 build (downloaded into $DRY/kornia-rs-cp311; what
#   `make gpu-wheels` carries for the GPU machine is left as it is).
# - torch $TORCH_SPEC (default 2.14.1, the newest torch whose torchvision, 0.29.1, this machine's package index
#   holds; it is PyPI's CUDA build, run here on the CPU) instead of 2.11 (CUDA). torchvision must be the build of
#   that same torch: PyPI's torchvision beside the project's +cpu torch does not import (checked below, with a
#   message). Where the CPU index is reachable, TORCH_SPEC='torch==2.11.*' TORCHVISION_SPEC='torchvision==0.26.*'
#   TORCH_INDEX=https://download.pytorch.org/whl/cpu gives the GPU machine's torch version, without CUDA.
# - The "system" is a venv ($DRY/system); the venv gpu_run.sh installs into ($DRY/gpu-venv, made afresh each
#   run) sees its packages through a .pth file, as `venv --system-site-packages` sees a system python's.
# Results go to $DRY/results (gitignored); the run's table is copied to benchmarks/results/gpu_dry_run.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=${DRY:-build/gpu-dry-run}
SYSTEM_PYTHON=${SYSTEM_PYTHON:-python3.11}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
TORCHVISION_SPEC=${TORCHVISION_SPEC:-torchvision==0.29.1}
TORCH_INDEX=${TORCH_INDEX:-}
WHEELS=build/gpu-wheels
mkdir -p "$DRY"
DRY=$(cd "$DRY" && pwd)

# The carried wheels, made again when missing or when selfsup's sources changed since its wheel was built.
if ! ls "$WHEELS"/lightly-*.whl "$WHEELS"/selfsup-*.whl >/dev/null 2>&1 \
        || [ -n "$(find src pyproject.toml -newer "$(ls "$WHEELS"/selfsup-*.whl | head -1)" -print -quit)" ]; then
    make gpu-wheels
fi

if [ ! -e "$DRY/system/.installed" ]; then
    echo "== the stand-in for the GPU machine's system packages: $DRY/system"
    rm -rf "$DRY/system"
    "$SYSTEM_PYTHON" -m venv "$DRY/system"
    "$DRY/system/bin/python" -m pip install -q ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} \
        "$TORCH_SPEC" "$TORCHVISION_SPEC" lightning timm transformers
    touch "$DRY/system/.installed"
fi
# A torchvision built for another torch (PyPI's CUDA build beside a +cpu torch) fails as soon as lightning imports
# it ("operator torchvision::nms does not exist"): the two must come from the same index.
"$DRY/system/bin/python" -c "import torch, torchvision, lightning" >/dev/null 2>&1 || {
    echo "$DRY/system: torchvision does not import beside its torch; install both from one index, e.g." \
         "TORCH_INDEX=https://download.pytorch.org/whl/cpu, after removing $DRY/system" >&2; exit 2; }
for absent in kornia lightly selfsup; do  # what the GPU machine lacks must be lacking here too
    if "$DRY/system/bin/python" -c "import $absent" 2>/dev/null; then
        echo "$DRY/system has $absent, which the GPU machine lacks: remove $DRY/system and rerun" >&2; exit 2
    fi
done

echo "== the carried wheels, kornia_rs swapped for the python of this dry run: $DRY/wheels"
PY_VERSION=$("$DRY/system/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
KORNIA_RS_VERSION=$(basename "$WHEELS"/kornia_rs-*.whl | cut -d- -f2)  # the version the GPU machine gets
mkdir -p "$DRY/kornia-rs-py$PY_VERSION"
ls "$DRY/kornia-rs-py$PY_VERSION"/kornia_rs-"$KORNIA_RS_VERSION"-*.whl >/dev/null 2>&1 || \
    "$DRY/system/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$DRY/kornia-rs-py$PY_VERSION" \
    "kornia-rs==$KORNIA_RS_VERSION"
rm -rf "$DRY/wheels" && mkdir "$DRY/wheels"
for path in "$PWD/$WHEELS"/* "$DRY/kornia-rs-py$PY_VERSION"/kornia_rs-*.whl; do
    case $path in "$PWD/$WHEELS"/kornia_rs-*) continue;; esac
    ln -s "$path" "$DRY/wheels/"
done

echo "== a fresh venv over the stand-in system: $DRY/gpu-venv"
rm -rf "$DRY/gpu-venv"
"$SYSTEM_PYTHON" -m venv "$DRY/gpu-venv"
SYSTEM_SITE=$("$DRY/system/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
GPU_SITE=$("$DRY/gpu-venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "import site; site.addsitedir('$SYSTEM_SITE')" > "$GPU_SITE/zz_gpu_dry_run_system.pth"

echo "== benchmarks/gpu_run.sh --device cpu --quick"
rm -rf "$DRY/gpu-site"
PYTHON="$DRY/gpu-venv/bin/python" SITE="$DRY/gpu-site" WHEELS="$DRY/wheels" \
    bash benchmarks/gpu_run.sh --device cpu --quick --out "$DRY/results"

echo "== gpu.py --device cuda on a machine without CUDA must refuse in one line"
if refusal=$(PYTHONPATH="$DRY/gpu-site" "$DRY/gpu-venv/bin/python" benchmarks/gpu.py --device cuda 2>&1); then
    echo "gpu.py --device cuda ran on a machine without CUDA" >&2; exit 1
fi
echo "$refusal"
[ "$(printf '%s\n' "$refusal" | wc -l)" -eq 1 ] || { echo "the refusal was not one line" >&2; exit 1; }
cp "$DRY/results/gpu_quick.md" benchmarks/results/gpu_dry_run.md
echo "dry run passed; its table: benchmarks/results/gpu_dry_run.md"
