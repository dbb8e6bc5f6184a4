.DEFAULT_GOAL := help
VENV ?= .venv

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

run: ## install into .venv and run on config/example.yml
	bash scripts/run-example.sh

test: ## install test dependencies, lint, type-check, run every test
	bash scripts/test.sh

lint: ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: ## mypy --strict on the packages
	$(VENV)/bin/mypy

bench: ## run the benchmarks and update docs/benchmarks.md
	$(VENV)/bin/python bench/scrape.py --write docs/benchmarks.md

.PHONY: help run test lint typecheck bench
