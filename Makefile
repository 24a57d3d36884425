# The two commands a fresh machine needs: `make demo` and `make test`. Both install what they use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install system-deps demo demo-replication test test-fast typecheck lint bench fuzz clean

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

# Two simulated clusters linked by Replica Of; both coupled certificates rotated through the queue.
demo-replication: install system-deps
	$(BIN)/python scripts/demo_replication.py

# mypy first (zero errors at default settings), then the whole suite on four xdist workers
# (pyproject.toml). pytest's exit code 5 (no tests collected) is a failure, not a pass.
test: install system-deps typecheck
	@$(BIN)/pytest -q -p no:cacheprovider; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

# The fast, pure tests (tests/unit, marker `unit`): no Redis, no simulator, no system packages.
test-fast: install
	@$(BIN)/pytest -q -p no:cacheprovider -m unit tests/unit

typecheck: install
	$(BIN)/mypy rotation workers schedules

lint: install
	$(BIN)/ruff check rotation workers schedules tests benchmarks

bench: install system-deps
	$(BIN)/python benchmarks/scan.py

# atheris (libFuzzer) on every parser of outside input, FUZZ_SECONDS each; a crash stops it and
# leaves its input in fuzz/crashes/. atheris is an optional extra: `make test` does not need it.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS  = signatures bodies grammar inventory pem
fuzz: install
	$(BIN)/pip install -q -e '.[dev,fuzz]'
	@for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$target; echo "== fuzz_$$target ($(FUZZ_SECONDS)s)"; \
		$(BIN)/python fuzz/fuzz_$$target.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
			-print_final_stats=1 fuzz/corpus/$$target fuzz/seeds/$$target || exit 1; \
	done

clean:
	rm -rf $(VENV) .demo .demo-replication .rotation
