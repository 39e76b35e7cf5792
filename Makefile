# The README's commands. `make run` and `make test` work on a fresh machine with Python 3.11+ and Node.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup run test cluster bench clean

$(VENV)/.installed: pip_requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r pip_requirements.txt
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

## setup: virtualenv, Python and npm packages, database migrations
setup: $(VENV)/.installed node_modules/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --clear --verbosity 0

## run: set up, then serve on http://$(HOST):$(PORT) (SQLite unless DATABASE_URL is set), with one job worker
WORKERS ?= 1
run: setup
	$(PY) run_server.py --host $(HOST) --port $(PORT) --workers $(WORKERS)

## test: the whole test suite against real server processes
test: setup
	$(PY) -m pytest

## cluster: broker + 2 nodes + nginx on http://127.0.0.1:8080 against PostgreSQL; Ctrl-C stops all
CLUSTER_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/chat
cluster: setup
	DATABASE_URL=$${DATABASE_URL:-$(CLUSTER_DATABASE_URL)} $(PY) deploy/cluster.py --port 8080 --nodes 2 --workers 2

## bench: ours against a Node.js Socket.IO reference (bench/README.md), e.g. BENCH_ARGS="--scenarios 1,2 --rounds 3"
bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules bench/node_modules bench/reference/node_modules staticfiles .pytest_cache
