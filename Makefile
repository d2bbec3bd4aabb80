# The two set-up commands: `make test` and `make demo`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install lint typecheck docs test test-long demo quickstart bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

typecheck: install
	$(VENV)/bin/mypy

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on any warning:
# a broken link, a page left out of the nav, an API reference that does not resolve.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The second pass runs the contract suite of the real backends again, against the
# other development broker (noida-db): the library must behave the same on both.
# Two workers, a file each at a time: most tests wait on brokers and group joins, so
# two of them share the machine's two cores well.
XDIST := -n 2 --dist loadfile

test: lint typecheck docs
	$(VENV)/bin/pytest $(XDIST)
	QI_DEV_BROKER=noida QI_TEST_BACKENDS=confluent,aiokafka $(VENV)/bin/pytest $(XDIST) tests/contract

# The invariant checker's long run: thousands of schedules on memory, tens of thousands
# of messages through many faults on each real backend (tens of minutes).
test-long: install
	QI_LONG=1 $(VENV)/bin/pytest tests/invariants

demo: install
	$(VENV)/bin/qi-stream demo

quickstart: install
	$(PY) examples/quickstart.py

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis site
