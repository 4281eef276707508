#!/usr/bin/env bash
# The GPU run in one command, on a machine with torch (CUDA), torchvision and lightning but no package
# registry: install the wheels that `make gpu-wheels` put in build/gpu-wheels (kornia, kornia_rs, lightly,
# tensorboardX, protobuf, selfsup) into a folder put on PYTHONPATH (build/gpu-site), without
# resolving dependencies, then run benchmarks/gpu.py under a timeout. Results go to benchmarks/results/.
#
#     make gpu-wheels                        # here, once (needs the package registry)
#     bash benchmarks/gpu_run.sh             # there: TIMEOUT=480 by default, extra arguments go to gpu.py
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-build/gpu-wheels}
SITE=${SITE:-build/gpu-site}
TIMEOUT=${TIMEOUT:-480}
PYTHON=${PYTHON:-python3}
[ -d "$WHEELS" ] || { echo "no $WHEELS: run \`make gpu-wheels\` on a machine with the package registry" >&2; exit 2; }
# The wheels go into a folder on PYTHONPATH rather than a venv: the GPU machine's python3 is itself a venv's
# (/opt/torch/.venv), and `venv --system-site-packages` made from it sees the base python, without torch.
mkdir -p "$SITE" && SITE=$(cd "$SITE" && pwd)
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
# Only what the system lacks: a system protobuf or tensorboardX is kept as it is.
for module_wheel in "kornia_rs:kornia_rs-*" "kornia:kornia-[0-9]*" "lightly:lightly-*" \
                    "google.protobuf:protobuf-*" "tensorboardX:tensorboard[Xx]-*"; do
    module=${module_wheel%%:*}; pattern=${module_wheel#*:}
    if ! "$PYTHON" -c "import $module" 2>/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/$pattern.whl
    fi
done
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$WHEELS"/selfsup-*.whl
"$PYTHON" -c "import selfsup, kornia, lightly, torch; print('selfsup', selfsup.__file__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec timeout "$TIMEOUT" "$PYTHON" benchmarks/gpu.py --data-root "$WHEELS/fashion-mnist" "$@"
