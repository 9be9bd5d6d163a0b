# Two commands for a fresh machine: `make up` and `make test` (see README).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up down test lint install npm browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall only when the dependency lists change.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

npm:
	@if [ -f package.json ] && [ ! -d node_modules ] || [ package.json -nt node_modules ]; then \
		npm install --no-audit --no-fund --loglevel=error && touch node_modules; fi

install: $(STAMP)
	@if [ -f package.json ]; then $(MAKE) --no-print-directory npm; fi

# Debian's chromium for the Tavern's browser tests; Playwright's own download does not work offline.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

up: install
	$(BIN)/realm up

down:
	$(BIN)/realm down

test: install
	-@$(MAKE) --no-print-directory browser
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
