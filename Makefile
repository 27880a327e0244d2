# velocast — set-up and checks. `make demo` and `make test` build everything they need.
PYTHON_BOOT ?= python3.11
VENV        := .venv
BQ_VENV     := .venv-bqemulator
PY          := $(VENV)/bin/python
UV          := $(VENV)/bin/uv
UV_VERSION  := 0.13.9
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv demo test lint typecheck unit lock stack-up stack-down clean

# The environment is rebuilt whenever a lock changes.
$(VENV)/.synced: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	test -x $(UV) || $(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(UV) pip sync --python $(PY) requirements.txt requirements-dev.txt
	$(UV) pip install --python $(PY) --no-deps -e .
	touch $@

$(BQ_VENV)/.synced: locks/bqemulator.txt $(VENV)/.synced
	test -x $(BQ_VENV)/bin/python || $(PYTHON_BOOT) -m venv $(BQ_VENV)
	$(UV) pip sync --python $(BQ_VENV)/bin/python locks/bqemulator.txt
	touch $@

venv: $(VENV)/.synced $(BQ_VENV)/.synced

demo: venv
	$(VENV)/bin/velocast demo

stack-up: venv
	$(VENV)/bin/velocast stack up

stack-down: venv
	$(VENV)/bin/velocast stack down

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy include serving airflow/dags bench

test: lint typecheck
	$(VENV)/bin/pytest

# Recompile the locks from the *.in files (needs the package index).
lock: $(VENV)/.synced
	$(UV) pip compile --python-version 3.11.7 requirements.in -o requirements.txt
	$(UV) pip compile --python-version 3.11.7 requirements-dev.in -o requirements-dev.txt
	$(UV) pip compile --python-version 3.11.7 locks/bqemulator.in -o locks/bqemulator.txt

clean:
	-$(VENV)/bin/velocast stack down
	rm -rf .velocast
