# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)   ## local Key Vault + identity endpoint + Functions host
	$(PY) -m localdev $(ARGS)

test: $(STAMP)  ## the whole suite
	$(PY) -m pytest $(ARGS)

bench: $(STAMP) ## benchmarks (figures, not pass/fail)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) .localdev .pytest_cache .hypothesis
