# Lead SLA Monitor: `make run` starts everything, `make test` checks everything.
# Every target is idempotent and needs only Python 3.11, make and the package registries.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AIRFLOW_HOME ?= $(CURDIR)/.airflow

.PHONY: install run test bench lint clean help

help:
	@echo "make install   create .venv and install everything (no-op when up to date)"
	@echo "make run       start Airflow (standalone) with the project's DAGs at http://localhost:8080"
	@echo "make test      run the whole test suite"
	@echo "make bench     run every benchmark in bench/ (JSON lines)"
	@echo "make lint      ruff check and ruff format --check (make test runs them too)"

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml include/sandbox/pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found: install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv, or pyenv install 3.11) or run make PYTHON=/path/to/python3.11"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || { echo "error: $(PYTHON) is $$($(PYTHON) --version 2>&1), this project needs Python 3.11: run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
# Both editable: leadsla (what the image ships) and leadsla-sandbox (the demo and tests only).
	$(BIN)/python -m pip install --quiet --no-deps -e . -e include/sandbox
	@touch $(STAMP)

run: install
	@scripts/run.sh

test: install
	@scripts/test.sh

bench: install
	@set -e; for script in bench/*.py; do echo "# $$script" >&2; $(BIN)/python $$script; done

lint: install
	$(BIN)/ruff check include dags plugins tests bench
	$(BIN)/ruff format --check include dags plugins tests bench

clean:
	rm -rf $(VENV) .airflow .pytest_cache
