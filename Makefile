# Two commands do all the set-up: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean install postgres-server java-runtime mutation bench-gpu

install: $(STAMP)

# torch first, pinned: an open-ended torch requirement would pull several GB of CUDA packages.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The story first: a small loop study (greedy retraining against loopbreak, paired over seeds),
# then the per-round loop with its off-policy estimates.
demo: $(STAMP)
	$(BIN)/loopbreak study --seeds 8 --arms greedy,loopbreak --out out/study
	$(BIN)/loopbreak demo --out out

# The store tests also run against a throwaway PostgreSQL server that the tests start themselves
# (tests/conftest.py, proplog/pg_server.py). Debian's `postgresql` package provides it: as root
# with apt-get it is installed when missing (a no-op when present); otherwise the PostgreSQL tests
# are skipped with a loud message.
PG_SERVER := $(firstword $(wildcard /usr/lib/postgresql/*/bin/postgres) $(shell command -v postgres 2>/dev/null))

postgres-server:
	@if [ -n "$(PG_SERVER)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's postgresql package for the PostgreSQL store tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	else \
	  echo "WARNING: no PostgreSQL server binary and no way to install it here:"; \
	  echo "WARNING: the PostgreSQL store tests will be SKIPPED (apt-get install postgresql)"; \
	fi

# The Spark tests (ope/spark_*, the Spark training table) run pyspark in local mode, which needs a
# Java runtime (17 or later). Debian's `openjdk-17-jre-headless` provides it: as root with apt-get
# it is installed when java is missing; otherwise the Spark tests are skipped with a loud message.
java-runtime:
	@if [ -n "$$JAVA_HOME" ] && [ -x "$$JAVA_HOME/bin/java" ] || command -v java >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's openjdk-17-jre-headless package for the Spark tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null; \
	else \
	  echo "WARNING: no Java runtime and no way to install it here:"; \
	  echo "WARNING: the Spark tests will be SKIPPED (apt-get install openjdk-17-jre-headless)"; \
	fi

test: $(STAMP) postgres-server java-runtime
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# Mutation testing of the library modules (mutation/targets.py), each against its own tests, one
# worker, at low priority; slow (see README, "Testing"), so not part of `make test`. It works in
# copies under mutation/work/ and never changes the working tree.
mutation: $(STAMP)
	nice -n 15 $(BIN)/python mutation/run.py

# The GPU measurements of `bench fm` (bench/gpu_suite.sh; README, "The GPU path"). No install: it
# runs on any Python with torch, numpy, pandas, scipy and tqdm (GPU_PYTHON, default python3),
# such as a bare CUDA image's. DATA_DIR, GPU_OUT, GPU_RUNS, GPU_LIMIT and GPU_ARGS are the
# script's settings.
bench-gpu:
	sh bench/gpu_suite.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) out .pytest_cache
