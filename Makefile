# Install, run and test the portal. `make help` lists the targets.
# Every target builds what it needs: a fresh clone only needs Python 3.12 (pyenv reads
# .python-version), make, and for `make test` a Debian machine with PostgreSQL and Redis.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.12
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHON VENV

# make run: SQLite under var/ and kombu's filesystem broker unless DATABASE_URL /
# CELERY_BROKER_URL are set in the environment.
BIND ?= 127.0.0.1:8000
export BIND

# make test: the suite runs against PostgreSQL and Redis.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/portal
TEST_CACHE_URL ?= redis://127.0.0.1:6379/1
TEST_BROKER_URL ?= redis://127.0.0.1:6379/2
PYTEST_ARGS ?= -n 2
TEST_ENV = DATABASE_URL=$(TEST_DATABASE_URL) CACHE_URL=$(TEST_CACHE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL)

.PHONY: help install install-test dirs run test services chromium bench lint lock clean

help:
	@echo "make run      create .venv (Python 3.12), install pinned deps, migrate, load the demo,"
	@echo "              serve http://$(BIND)/ with Celery worker + beat (Ctrl-C stops all)"
	@echo "make test     install deps + test extras, Chromium, start PostgreSQL/Redis, run pytest"
	@echo "make bench    run bench/run against the same services"
	@echo "make lint     system checks, migrations up to date, every module compiles"
	@echo "make lock     re-resolve pyproject.toml and rewrite requirements.lock"
	@echo "make clean    remove collected static files and broker folders (keeps the database)"

install:
	@scripts/install.sh runtime

install-test:
	@scripts/install.sh test

dirs:
	@mkdir -p var/broker/queue var/broker/processed var/broker/control

run: install dirs
	@# In a terminal the run is a job of its own (bash -m): Ctrl-C reaches it, not make, so
	@# scripts/run.sh stops the processes and `make run` exits 0 (make dies of a SIGINT it gets).
	@if [ -t 0 ]; then bash -mc 'scripts/run.sh; exit $$?'; else scripts/run.sh; fi

chromium:
	@scripts/ensure-chromium.sh

services:
	@DATABASE_URL=$(TEST_DATABASE_URL) scripts/ensure-services.sh

test: install-test chromium services dirs
	@$(PY) manage.py collectstatic --noinput --verbosity 0
	$(TEST_ENV) $(VENV)/bin/pytest $(PYTEST_ARGS)

bench: install-test services dirs
	@export $(TEST_ENV) PATH="$(abspath $(VENV))/bin:$$PATH"; \
	if [ -x bench/run ]; then \
		bench/run; \
	elif [ -f bench/run ]; then \
		bash bench/run; \
	else \
		echo "bench/run not found: no benchmarks to run"; \
	fi

lint: install-test
	$(PY) manage.py check --fail-level WARNING
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m compileall -q portal billing promotions tests
	$(VENV)/bin/lint-imports

lock:
	@scripts/lock.sh

clean:
	rm -rf staticfiles var/broker
