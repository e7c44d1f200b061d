# The commands the README names. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
UV := python3 -m uv
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help install services browser run test coverage lint format bench migrate

help:
	@echo "make run      install, start services, migrate, start web + worker + beat + cache"
	@echo "              listener (with DEBUG on: demo data, and the local Google Ads sandbox"
	@echo "              when no credentials are set); Ctrl-C stops them all"
	@echo "make test     install, start services, lint, run the full test suite"
	@echo "make coverage install, start services, run the test suite under coverage.py (the"
	@echo "              processes the tests start included): a report, and htmlcov/index.html"
	@echo "make lint     ruff check, ruff format --check, mypy"
	@echo "make format   ruff fixes and formatting"
	@echo "make migrate  install, start services, create the database if needed, migrate"
	@echo "make bench    benchmarks (results go to docs/benchmarks.md)"
	@echo "make services start PostgreSQL, Redis and RabbitMQ on loopback if installed and down"
	@echo "make browser  install Chromium and ChromeDriver (Debian's) for the browser tests"

# Bytecode is compiled here, once: where PYTHONDONTWRITEBYTECODE is set (this machine, the
# Docker image), Python never writes it, and every process would compile Django, Celery and
# google-ads from source at start-up (`manage.py backfill_ads --help`: 4.4 s without, 1.4 s with).
# Without uv, pip installs it; a Python that refuses (Debian's: PEP 668, "externally managed")
# gets it in the user's site-packages (~/.local), which leaves the system's packages alone.
install:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv 2>/dev/null \
		|| python3 -m pip install --quiet --user --break-system-packages uv
	@$(UV) sync --frozen --quiet --compile-bytecode
	@$(PY) -m compileall -q inventory_project products ads_sync

services:
	@scripts/ensure_services.sh

# Chromium and ChromeDriver for the browser tests (installed with apt-get where missing).
browser:
	@scripts/ensure_browser.sh

migrate: install
	@scripts/migrate.sh

# run.sh migrates (scripts/migrate.sh) after it has checked its ports: a second checkout's
# `make run` must not migrate the database of the one already running before it refuses.
run: install
	@scripts/run.sh

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy inventory_project products ads_sync bench

format: install
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

# The suite runs in TEST_WORKERS processes (pytest-xdist), each with its own database, cache
# prefix and queue (settings/test.py): most of its time is spent waiting on what it stages
# (servers starting, outages, timeouts), so two processes take about 40 % less time, even on
# 2 cores. TEST_WORKERS=0 runs it in this process, as a debugger needs.
TEST_WORKERS ?= 2

test: install services browser lint
	DJANGO_SETTINGS_MODULE=inventory_project.settings.test $(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The suite under coverage.py, configured in pyproject.toml ([tool.coverage.*]): each process
# writes a .coverage.* file of its own, combined into one report. A test that fails still gets its
# report; the target then exits with pytest's status. No lint: `make test` has it.
coverage: install services browser
	@rm -rf htmlcov && $(PY) -m coverage erase
	DJANGO_SETTINGS_MODULE=inventory_project.settings.test $(PY) -m coverage run -m pytest $(PYTEST_ARGS); \
	status=$$?; \
	$(PY) -m coverage combine --quiet && $(PY) -m coverage report && $(PY) -m coverage html --quiet \
		&& echo "HTML report: htmlcov/index.html" || status=$$((status ? status : 1)); \
	exit $$status

bench: install services
	@scripts/bench.sh
