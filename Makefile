# The two commands of the README: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench napari clean

setup:
	VENV=$(VENV) bash scripts/setup.sh

demo: setup
	$(VENV)/bin/ptycho-app demo --out demo-output

test: setup
	$(PY) -m pytest

napari: setup
	$(VENV)/bin/napari -w ptycho-app "FP reconstruction"

bench: setup
	$(PY) benchmarks/fp256.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
