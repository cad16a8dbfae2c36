# Two commands set everything up on a fresh machine (Python 3.11+ and make are all it needs):
#   make demo   the local console on demo SQLite targets (make demo-keep: on the last run's data)
#   make test   the test suite (starts the local PostgreSQL if it is installed and stopped)
export UV_PYTHON_DOWNLOADS := never
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)

.PHONY: demo demo-keep test lint install
demo: .venv/.synced  # ARGS are passed on: make demo ARGS="--keep --as bob"
	.venv/bin/barq-bot shell --demo $(ARGS)

demo-keep: .venv/.synced  # the demo on the data of the last run, pending requests included
	.venv/bin/barq-bot shell --demo --keep $(ARGS)

test: .venv/.synced
	bash .ci/ensure-postgres
	bash .ci/ensure-odbc
	.venv/bin/pytest -n auto --maxprocesses 4

lint: .venv/.synced
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

install: .venv/.synced

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python python3
	touch $@

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"
