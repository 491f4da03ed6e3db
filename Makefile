# Two commands for a fresh machine: `make run` serves on SQLite, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install system-deps browser-deps bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# PostgreSQL (for the tests) from Debian's packages, when it is not there yet.
system-deps:
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
		echo "installing PostgreSQL from Debian's packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi

# bpmn-js for the case diagrams, from npm (node_modules is not committed).
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund || npm install --no-audit --no-fund
	touch $@

# The browser tests: Debian's Chromium and a CJK font for the screenshots (never `playwright install`).
browser-deps: node_modules/.package-lock.json
	@if [ ! -x /usr/bin/chromium ] || ! fc-list :lang=zh 2>/dev/null | grep -q .; then \
		echo "installing chromium and a Chinese font from Debian's packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; \
	fi

run: install node_modules/.package-lock.json
	$(BIN)/complaintflow serve --host 127.0.0.1 --port 5000

test: install system-deps browser-deps
	$(BIN)/python -m pytest -q

bench: install system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info node_modules screenshots
