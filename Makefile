# Two entry points for a newcomer: `make demo` (the main job) and `make test` (the test suite).
# Both install everything they need: Debian data packages, a virtual environment with the CPU build of
# torch pinned, and selfsup itself in editable mode.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
LITDATA ?= litdata==0.2.76
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Fashion-MNIST, the fortunes corpus, the GCIDE dictionary (the large unlabeled English text corpus, data/text.py),
# 30 colour photographs among these wallpaper packages (data/photos.py), and the colour emoji font with
# Unicode's emoji table (the image-caption pairs of data/pairs.py)
DEBIAN_DATA := dataset-fashion-mnist dict-gcide fonts-noto-color-emoji fortunes fortunes-min lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds unicode-data
# Headless Chromium: tests/test_report_pages.py opens the HTML reports in a real browser (skipped without it)
DEBIAN_TOOLS := chromium
SYSTEM_DEPS := $(DEBIAN_DATA) $(DEBIAN_TOOLS)

.PHONY: demo test bench system-deps venv clean-venv gpu-wheels gpu-dry-run

system-deps:
	@dpkg -s $(SYSTEM_DEPS) >/dev/null 2>&1 || { \
		echo "installing Debian packages: $(SYSTEM_DEPS)"; \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $(SYSTEM_DEPS); }

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]" "$(TORCH)"
	$(PY) -m pip install --quiet --no-deps "$(LITDATA)"  # streaming; its torchvision is left out (pyproject.toml: stream)
	touch $@

venv: $(VENV)/.installed

demo: system-deps venv
	$(VENV)/bin/selfsup demo --out results/demo

test: system-deps venv
	$(PY) -m pytest -q

bench: system-deps venv
	$(VENV)/bin/selfsup bench

clean-venv:
	rm -rf $(VENV)

# What benchmarks/gpu_run.sh installs on a GPU machine that has torch, torchvision, lightning and transformers but
# no package registry: pure-Python wheels (kornia, lightly, tensorboardX), protobuf (abi3, x86_64 Linux),
# kornia's compiled companion kornia_rs for CPython 3.12, a wheel of selfsup, and the Fashion-MNIST IDX files.
GPU_WHEELS ?= build/gpu-wheels
GPU_PY ?= 3.12
WHEEL_PY ?= python3  # any python with pip; nothing is installed into it
gpu-wheels:
	mkdir -p $(GPU_WHEELS)/fashion-mnist
	$(WHEEL_PY) -m pip download --no-deps -q -d $(GPU_WHEELS) --python-version $(GPU_PY) --only-binary=:all: \
		kornia lightly==1.6.0 tensorboardX protobuf
	$(WHEEL_PY) -m pip download --no-deps -q -d $(GPU_WHEELS) --python-version $(GPU_PY) \
		--platform manylinux2014_x86_64 --only-binary=:all: kornia-rs
	$(WHEEL_PY) -m pip wheel --no-deps -q -w $(GPU_WHEELS) .
	cp /usr/share/datasets/fashion-mnist/*.gz $(GPU_WHEELS)/fashion-mnist/

# The GPU run's one command, rehearsed here on the CPU (benchmarks/gpu_dry_run.sh): a stand-in for the GPU
# machine's packages (torch, torchvision, lightning, timm, transformers; no kornia, no lightly), gpu_run.sh
# installing the carried wheels into a venv over it, then every part of gpu.py --quick, lightly's half included.
gpu-dry-run:
	nice -n 19 bash benchmarks/gpu_dry_run.sh
