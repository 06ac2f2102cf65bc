# The two commands of the README quickstart (`make demo`, `make test`) and a few more.
# Each target creates the local virtual environment (.venv) with what it needs on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MPIEXEC := $(VENV)/bin/mpiexec
STAMP := $(VENV)/.pilotq-installed
# hard limits (seconds) around each test run: MPI bugs hang rather than fail
UNIT_TEST_TIMEOUT ?= 1200
E2E_TEST_TIMEOUT ?= 2400
MPI_TEST_TIMEOUT ?= 900
PYTEST_MPI := $(PY) -m pytest --with-mpi -p no:cacheprovider -q tests/mpi

.PHONY: demo test test-unit test-e2e test-mpi test-mpi-4 test-mpi-6 test-mpi-hier bench figures clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[mpich,quantum,qml,test]'
	touch $(STAMP)

demo: $(STAMP)  ## the mixed quantum workload on local mpiexec (8 ranks)
	$(VENV)/bin/pilotq-mpi demo

# Runs every group even when one fails, prints one line per group, fails at the end if any did.
test: $(STAMP)  ## every test: unit, end-to-end (incl. Slurm if installed), MPI at 4 and 6 ranks
	@failed=""; summary=""; \
	for group in unit e2e mpi-4 mpi-6 mpi-hier; do \
	    echo "=== make test: $$group"; \
	    if $(MAKE) --no-print-directory test-$$group; then result=passed; \
	    else result=FAILED; failed="$$failed $$group"; fi; \
	    summary="$$summary  $$group: $$result\n"; \
	done; \
	printf "=== make test summary\n$$summary"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: all groups passed"

# Each group runs between a snapshot of /dev/shm and a cleanup of the MPICH segments that its
# killed or aborted MPI jobs left there (those no live process uses; tests/e2e/slurm_cluster.py).
SHM := $(PY) tests/e2e/slurm_cluster.py
define with_shm_cleanup
	@before=$$(mktemp); $(SHM) --shm-snapshot $$before; \
	echo '$(1)'; $(1); status=$$?; \
	$(SHM) --shm-clean $$before; rm -f $$before; exit $$status
endef

test-unit: $(STAMP)
	$(call with_shm_cleanup,timeout -k 10 $(UNIT_TEST_TIMEOUT) $(PY) -m pytest -q tests/unit)

# the Slurm tests start (and always stop) a one-node cluster; skipped loudly without Slurm
test-e2e: $(STAMP)
	$(call with_shm_cleanup,timeout -k 10 $(E2E_TEST_TIMEOUT) $(PY) -m pytest -q -rs tests/e2e)

test-mpi: test-mpi-4 test-mpi-6 test-mpi-hier

# the same MPI suite under hierarchical masters: 2 sub-masters over groups of 4 and 3 workers
test-mpi-hier: $(STAMP)
	$(call with_shm_cleanup,PILOTQ_SUBMASTERS=2 timeout -k 10 $(MPI_TEST_TIMEOUT) $(MPIEXEC) -n 10 $(PYTEST_MPI))

test-mpi-4 test-mpi-6: test-mpi-%: $(STAMP)
	$(call with_shm_cleanup,timeout -k 10 $(MPI_TEST_TIMEOUT) $(MPIEXEC) -n $* $(PYTEST_MPI))

bench: $(STAMP)  ## benchmarks (JSON in benchmarks/results, table in benchmarks/README.md)
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/subcomm.py
	$(PY) benchmarks/statevector.py
	$(PY) benchmarks/cutting.py
	$(PY) benchmarks/mixed.py
	$(PY) benchmarks/trace_writer.py
	$(PY) benchmarks/elastic.py
	$(PY) benchmarks/planner.py
	$(PY) benchmarks/scheduler_scale.py
	$(PY) benchmarks/master_cost.py
	$(PY) benchmarks/scale_model.py
	$(PY) benchmarks/costs.py
	$(PY) -m pip install --quiet -e '.[peers]'  # the peer runtimes, for peers.py only
	$(PY) benchmarks/peers.py
	$(PY) benchmarks/tables.py --update

figures: $(STAMP)  ## the Pilot-Quantum paper's figures at size small (JSON + PNG in benchmarks/results)
	$(PY) benchmarks/figures/run.py --size small

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
