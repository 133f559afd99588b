# The two commands: `make run` (install, start everything locally) and `make test` (install, run the suite).
# Everything installs into .venv; PostgreSQL and Redis are DATABASE_URL / REDIS_URL when set, else embedded.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test lint bench clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/hyperfollow up --exchange sim

# The web page's test drives the distribution's Chromium (Playwright's own browser download needs the internet).
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/hyperfollow bench

clean:
	-$(BIN)/hyperfollow embedded stop
	rm -rf $(VENV) .hyperfollow logs
