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
	$(VENV)/bin/python bench/icmp.py --write

demo: ## simulated province + agent + Prometheus with the shipped rules (root; prints URLs)
	bash deploy/demo/demo.sh start

demo-stop: ## stop the demo and remove every namespace and file it made
	bash deploy/demo/demo.sh stop

demo-cut: ## cut a district's link in the demo (SITE=vx)
	bash deploy/demo/demo.sh cut $(or $(SITE),vx)

demo-restore: ## restore it (SITE=vx)
	bash deploy/demo/demo.sh restore $(or $(SITE),vx)

.PHONY: help run test lint typecheck bench demo demo-stop demo-cut demo-restore
