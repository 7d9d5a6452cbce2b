# The two commands of the README: `make demo` and `make test`. Each sets up .venv on its own.
VENV   ?= .venv
VENV_PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.seatrial-installed
LOCK   := requirements.lock
SAMPLE := data/sample/dataset.toml
UV_VERSION := 0.13.9

.PHONY: demo test lint export-check nbtest pytest install sample bench lock lock-check

# .venv gets the versions in requirements.lock, not the newest that settings.ini's lower bounds allow, so a clone
# next month runs what was tested today. Every file is hash-checked: --require-hashes (pip refuses a package the lock
# does not pin, so the lock is also proved complete), --only-binary (nothing is built from source, whose build tools
# pip would fetch unpinned and unhashed). seatrial itself goes in last, without dependencies and without build
# isolation: its build backend is the lock's setuptools. The check first stops a lock that settings.ini has outgrown.
$(STAMP): setup.py settings.ini $(LOCK)
	test -x $(PY) || $(VENV_PYTHON) -m venv $(VENV)
	$(PY) .ci/lock.py check
	$(PY) -m pip install --quiet --require-hashes --only-binary :all: -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

install: $(STAMP)

# Re-make requirements.lock from settings.ini (after changing its requirements or dev_requirements; CI fails until
# then). The versions already in the lock are kept and only what a changed requirement forces moves; UPGRADE=1 takes
# the newest versions allowed instead (then `make test`). The first lock was compiled with .venv's `pip freeze --all`
# as constraints (.ci/lock.py compile --constraints), so it pins exactly the versions the suite had passed with;
# constraints rather than compile-then-compare because uv then fails loudly if those versions cannot satisfy
# settings.ini. The comparison with .venv is printed after every lock. uv is needed here only, never to install:
# set UV=path/to/uv, or a pinned uv is installed into a throwaway venv.
lock:
	@set -e; uv="$(UV)"; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  if [ -z "$$uv" ]; then $(VENV_PYTHON) -m venv "$$tmp/uv" && "$$tmp/uv/bin/pip" install --quiet uv==$(UV_VERSION) && uv="$$tmp/uv/bin/uv"; fi; \
	  $(VENV_PYTHON) .ci/lock.py compile --uv "$$uv" $(if $(UPGRADE),--upgrade); \
	  if [ -x $(PY) ]; then $(VENV_PYTHON) .ci/lock.py compare $(PY) || echo "(make install brings $(VENV) to the lock)"; fi

# requirements.lock was compiled from settings.ini's current requirements (cheap: make test runs it first).
lock-check:
	$(VENV_PYTHON) .ci/lock.py check

# The small sample every stage notebook defaults to (so a bare papermill or JupyterLab run works). Made only when it is
# missing (order-only on the install): the committed sample is data, never rewritten by a later install.
$(SAMPLE): | $(STAMP)
	$(VENV)/bin/seatrial generate data/sample --rows 40000 --seed 0

sample: $(SAMPLE)

demo: $(STAMP)
	$(VENV)/bin/seatrial demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

# src/ must be exactly what nbdev_export writes from nbs/.
export-check: $(STAMP)
	@tmp=$$(mktemp -d) && cp -r settings.ini setup.py nbs src $$tmp/ && \
	  (cd $$tmp && git init -q . && $(CURDIR)/$(VENV)/bin/nbdev_export) && \
	  diff -r -q --exclude=__pycache__ --exclude='*.egg-info' src $$tmp/src && rm -rf $$tmp && \
	  echo "src/ matches nbdev_export"

# The notebooks' examples run in a copy of the project (settings.ini, nbs/, the sample data): what they make, such as
# the Start Here notebook's two runs and their model versions, lands in the copy, not in this folder's mlflow.db.
nbtest: $(STAMP)
	@tmp=$$(mktemp -d) && mkdir $$tmp/data && cp -r settings.ini nbs $$tmp/ && cp -r data/sample $$tmp/data/ && \
	  (cd $$tmp && $(CURDIR)/$(VENV)/bin/nbdev_test --flags slow --n_workers 2); rc=$$?; rm -rf $$tmp; exit $$rc

# Two pytest-xdist workers for tests/: most of a test's time is a kernel, MLflow or a browser in another process, so
# two at once use the 2 cores; a module's tests stay in one worker (--dist loadfile), so its module fixtures are built
# once. Files go out in the order tests/conftest.py gives them, long ones first (--no-loadscope-reorder: not by how many
# tests they hold), so both workers end together. WORKERS=0 runs them in this process. Then the stage notebooks under
# nbval, in one process and in order: each reads what the one before it wrote in runs/sample.
WORKERS ?= 2
pytest: $(STAMP) $(SAMPLE)
	$(VENV)/bin/pytest tests $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile --no-loadscope-reorder)
	$(VENV)/bin/pytest nbs/pipeline

test: lock-check lint export-check nbtest pytest

# The figures of BENCHMARKS.md (about an hour and a half on 2 cores; run on a quiet machine).
bench: $(STAMP)
	$(PY) benchmarks/bench_pipeline.py --rows 200000 1000000
	$(PY) benchmarks/bench_weather_join.py
	$(PY) benchmarks/bench_shap.py --trees 100 --rows 20000 1000000 --full-upto 20000 --repeat 3
	$(PY) benchmarks/bench_fleet.py 5000000
	$(PY) benchmarks/bench_busy.py --repeat 3 --quiet-below 1.0 --max-wait 300
