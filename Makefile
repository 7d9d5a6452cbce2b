# The two commands of the README: `make demo` and `make test`. Each sets up .venv on its own.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.seatrial-installed
SAMPLE := data/sample/dataset.toml

.PHONY: demo test lint export-check nbtest pytest install sample bench

$(STAMP): setup.py settings.ini
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(STAMP)

# The small sample every stage notebook defaults to (so a bare papermill or JupyterLab run works).
$(SAMPLE): $(STAMP)
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

nbtest: $(STAMP)
	$(VENV)/bin/nbdev_test --flags slow --n_workers 2

pytest: $(STAMP) $(SAMPLE)
	$(VENV)/bin/pytest

test: lint export-check nbtest pytest

# The figures of BENCHMARKS.md (about an hour and a half on 2 cores; run on a quiet machine).
bench: $(STAMP)
	$(PY) benchmarks/bench_pipeline.py --rows 200000 1000000
	$(PY) benchmarks/bench_weather_join.py
	$(PY) benchmarks/bench_shap.py --trees 100 --rows 20000 1000000 --full-upto 20000 --repeat 3
	$(PY) benchmarks/bench_fleet.py 5000000
	$(PY) benchmarks/bench_busy.py --repeat 3 --quiet-below 1.0 --max-wait 300
