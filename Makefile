# The two commands of the README quickstart (`make demo`, `make test`) and a few more.
# Each target creates the local virtual environment (.venv) with what it needs on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MPIEXEC := $(VENV)/bin/mpiexec
STAMP := $(VENV)/.pilotq-installed
# hard limits: MPI bugs hang rather than fail
MPI_TEST_TIMEOUT ?= 900
PYTEST_MPI := $(PY) -m pytest --with-mpi -p no:cacheprovider -q tests/mpi

.PHONY: demo test test-unit test-e2e test-mpi bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[mpich,quantum,test]'
	touch $(STAMP)

demo: $(STAMP)  ## the mixed quantum workload on local mpiexec (8 ranks)
	$(VENV)/bin/pilotq-mpi demo

test: test-unit test-e2e test-mpi  ## every test: unit, end-to-end (incl. Slurm if installed), MPI at 4 and 6 ranks

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test-e2e: $(STAMP)
	$(PY) -m pytest -q -rs tests/e2e

test-mpi: $(STAMP)
	timeout -k 10 $(MPI_TEST_TIMEOUT) $(MPIEXEC) -n 4 $(PYTEST_MPI)
	timeout -k 10 $(MPI_TEST_TIMEOUT) $(MPIEXEC) -n 6 $(PYTEST_MPI)

bench: $(STAMP)  ## benchmarks (JSON in benchmarks/results, table in benchmarks/README.md)
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/subcomm.py
	$(PY) benchmarks/statevector.py
	$(PY) benchmarks/cutting.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
