# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

NODE_STAMP := node_modules/.package-lock.json

# The worker referee (tests/host/test_worker_parity.py): Microsoft's Python 3.13 worker in its own venv.
# (a python3.13 that runs; a pyenv shim without a selected 3.13 does not, so pyenv's own builds come first)
WORKER_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) \
	$(shell python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null))
WORKER_VENV   := .venv-worker
WORKER_STAMP  := $(WORKER_VENV)/.installed

.PHONY: run test check bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# npm dev tools for tests: Azurite (cross-instance lock) and the JavaScript Key Vault SDK (interop);
# those tests skip with a named reason where Node.js is absent.
$(NODE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the blob-lease and JavaScript SDK tests will be skipped (they need Node.js)"; fi

$(WORKER_STAMP): requirements-worker.txt requirements.txt
	@if [ -z "$(WORKER_PYTHON)" ]; then echo "no python3.13 found: the worker parity test will be skipped"; else \
	$(WORKER_PYTHON) -m venv $(WORKER_VENV) && $(WORKER_VENV)/bin/python -m pip install --quiet --upgrade pip && \
	$(WORKER_VENV)/bin/python -m pip install --quiet -r requirements-worker.txt && touch $(WORKER_STAMP); fi

run: $(STAMP)   ## local Key Vault + identity endpoint + Functions host
	$(PY) -m localdev $(ARGS)

test: $(STAMP) $(NODE_STAMP) $(WORKER_STAMP)  ## the whole suite
	$(PY) -m pytest $(ARGS)

check: $(STAMP)  ## gates: formatting, lint, types (strict on the deployed app)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict function_app.py shared blueprints
	$(VENV)/bin/mypy localdev

bench: $(STAMP) ## benchmarks (figures, not pass/fail)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) $(WORKER_VENV) node_modules .localdev .pytest_cache .hypothesis
