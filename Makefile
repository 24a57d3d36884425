# The two commands a fresh machine needs: `make demo` and `make test`. Both install what they use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install system-deps demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# redis-server, pebble and BIND (named) come from the system packages; installed only when missing.
system-deps:
	@bash scripts/system-deps.sh

demo: install system-deps
	$(BIN)/python scripts/demo.py

# pytest's exit code 5 (no tests collected) is a failure, not a pass.
test: install system-deps
	@$(BIN)/pytest -q -p no:cacheprovider; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

lint: install
	$(BIN)/ruff check rotation workers schedules tests benchmarks

bench: install system-deps
	$(BIN)/python benchmarks/scan.py

clean:
	rm -rf $(VENV) .demo .rotation
