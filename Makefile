# The two commands of the README: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench bench-fp256 bench-tiled bench-real napari clean

setup:
	VENV=$(VENV) bash scripts/setup.sh

demo: setup
	$(VENV)/bin/ptycho-app demo --out demo-output

# scripts/gui-deps.sh installs Xvfb and Qt's xcb libraries when it can (root with apt-get); otherwise the
# napari tests are skipped with the reason.
test: setup
	bash scripts/gui-deps.sh
	$(PY) -m pytest

napari: setup
	$(VENV)/bin/napari -w ptycho-app "FP reconstruction"

# The study that decides the defaults (about an hour on 2 cores): benchmarks/results/study.*, docs/study.md;
# then the defaults' error and BM vs UDU lambda_2/lambda_1 (3 minutes): benchmarks/results/contrast.*, and the
# defaults with each loss on Poisson data (5 minutes): benchmarks/results/poisson_losses.*
bench: setup
	$(PY) benchmarks/study.py --stage all
	$(PY) benchmarks/contrast.py
	$(PY) benchmarks/poisson_losses.py

# Iteration cost vs the FFT bound, batch scaling, memory; per-iteration overhead against the last commit
bench-fp256: setup
	$(PY) benchmarks/fp256.py
	$(PY) benchmarks/overhead.py

# Whole fields of view: tiled accuracy on a simulated 256 x 256 field (about 10 minutes), then tiles per
# second in process and on a Dask LocalCluster with 1 and 2 workers, at three field sizes (about 8 minutes)
bench-tiled: setup
	$(PY) benchmarks/tiled.py
	$(PY) benchmarks/tiled_dask.py

# The blood smear in ../shared with the defaults
bench-real: setup
	$(PY) benchmarks/bloodsmear.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
