# velocast — set-up and checks. `make demo` and `make test` build everything they need.
PYTHON_BOOT ?= python3.11
VENV        := .venv
BQ_VENV     := .venv-bqemulator
CHECKOV_VENV := .venv-checkov
PY          := $(VENV)/bin/python
UV          := $(VENV)/bin/uv
UV_VERSION  := 0.13.9
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv demo test lint imports typecheck unit lock stack-up stack-down clean

# The environment is rebuilt whenever a lock changes.
$(VENV)/.synced: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	test -x $(UV) || $(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(UV) pip sync --compile-bytecode --python $(PY) requirements.txt requirements-dev.txt
	$(UV) pip install --python $(PY) --no-deps -e .
	touch $@

$(BQ_VENV)/.synced: locks/bqemulator.txt $(VENV)/.synced
	test -x $(BQ_VENV)/bin/python || $(PYTHON_BOOT) -m venv $(BQ_VENV)
	$(UV) pip sync --python $(BQ_VENV)/bin/python locks/bqemulator.txt
	touch $@

# checkov (Terraform static analysis in tests/infra) conflicts with the main pins too.
$(CHECKOV_VENV)/.synced: locks/checkov.txt $(VENV)/.synced
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON_BOOT) -m venv $(CHECKOV_VENV)
	$(UV) pip sync --python $(CHECKOV_VENV)/bin/python locks/checkov.txt
	touch $@

venv: $(VENV)/.synced $(BQ_VENV)/.synced $(CHECKOV_VENV)/.synced

# promtool and amtool (Debian packages prometheus, prometheus-alertmanager) for the observability
# config tests; installed only when missing. On a host with systemd the packages also start their
# services (ports 9090 and 9093): `systemctl disable --now prometheus prometheus-alertmanager`.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
.PHONY: tools
tools:
	@if command -v promtool >/dev/null && command -v amtool >/dev/null; then \
	  echo "promtool and amtool present"; \
	else \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y --no-install-recommends prometheus prometheus-alertmanager; \
	fi


demo: venv
	$(VENV)/bin/velocast demo

stack-up: venv
	$(VENV)/bin/velocast stack up

stack-down: venv
	$(VENV)/bin/velocast stack down

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory imports

# The import contracts of pyproject.toml ([tool.importlinter]).
imports: venv
	$(VENV)/bin/lint-imports --no-cache

typecheck: venv
	$(VENV)/bin/mypy include serving airflow/dags bench

test: lint typecheck tools
	$(VENV)/bin/pytest

# Recompile the locks from the *.in files (needs the package index).
lock: $(VENV)/.synced
	$(UV) pip compile --python-version 3.11.7 requirements.in -o requirements.txt
	$(UV) pip compile --python-version 3.11.7 requirements-dev.in -o requirements-dev.txt
	$(UV) pip compile --python-version 3.11.7 locks/bqemulator.in -o locks/bqemulator.txt
	$(UV) pip compile --python-version 3.11.7 locks/checkov.in -o locks/checkov.txt

clean:
	-$(VENV)/bin/velocast stack down
	rm -rf .velocast
