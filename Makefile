# The two commands: `make run` (install, start everything locally) and `make test` (install, run the suite).
# Everything installs into .venv; PostgreSQL and Redis are DATABASE_URL / REDIS_URL when set, else embedded.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/hyperfollow embedded start
	$(BIN)/hyperfollow db upgrade

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/hyperfollow bench

clean:
	-$(BIN)/hyperfollow embedded stop
	rm -rf $(VENV) .hyperfollow logs
