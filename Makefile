# The two commands (see README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the CPU wheel on this machine's disk: never a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,demo]'
	# timm for the coverage run, with the one torchvision served for torch 2.13 (a CUDA build whose
	# ops cannot load here), kept out of the environment: see tools/model_catalog._import_timm
	$(PY) -m pip install --quiet --no-deps --target $(VENV)/timm-site timm==1.0.29 torchvision==0.28.0
	touch $@

demo: $(VENV)/.installed
	$(PY) -m torch_hetero demo

test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:logging -n 2 tests
