# The commands a newcomer needs: `make serve`, `make test` and `make bench`.
# Everything runs from a project-local virtualenv that these targets create on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.crossbook-installed
PYX    := $(shell find src -name '*.pyx' -o -name '*.pxd')
# Worker processes for the test suite (pytest-xdist); the machine has 2 cores.
JOBS   ?= auto

.PHONY: install build test test-fast bench bench-short serve clean distclean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Build requirements go into the venv so that rebuilds after editing a .pyx need no network and
# no isolated build environment.
$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install --quiet "setuptools>=68" wheel "Cython>=3.0" "numpy>=1.26"
	$(BIN)/python -m pip install --quiet --no-build-isolation -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Incremental: cythonize recompiles only the .pyx files that changed.
build: $(STAMP)
	$(BIN)/python setup.py --quiet build_ext --inplace

# The whole suite, then the benchmarks in short mode as a regression guard (same-run ratio floors).
test: build
	$(BIN)/python -m pytest -n $(JOBS) tests
	$(BIN)/python -m pytest benchmarks --bench-mode=short -p no:xdist

test-fast: build
	$(BIN)/python -m pytest -n $(JOBS) tests -m "not slow"

# Full benchmarks: prints the comparison tables and checks the issue targets.
bench: build
	$(BIN)/python -m pytest benchmarks --bench-mode=full -p no:xdist -s

# The OMS server on the embedded default config (docs/config.md): FIX on 127.0.0.1:9878, HTTP on
# 127.0.0.1:8080, storage under ./var/. Ctrl-C stops it cleanly. SERVE_ARGS passes flags through.
serve: build
	$(BIN)/crossbook serve $(SERVE_ARGS)

clean:
	rm -rf build .pytest_cache .benchmarks
	find src -name '*.so' -delete

distclean: clean
	rm -rf $(VENV) *.egg-info src/*.egg-info
