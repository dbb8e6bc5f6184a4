.DEFAULT_GOAL := help
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' agent/kernel/version.py)
# Wheels with C extensions (pydantic-core, PyYAML, cffi) are built for one Python and one machine:
# the bundle's name says which, so it is not carried to a machine it cannot install on.
PLATFORM := $(shell $(PYTHON) -c 'import platform, sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
BUNDLE := giamsat-$(VERSION)-$(PLATFORM)
BUILD ?= build/bundle
DIST ?= dist
BUNDLE_DIR := $(BUILD)/$(BUNDLE)

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
	$(VENV)/bin/python bench/web_tls.py --write docs/benchmarks.md

bundle: ## offline install tarball in dist/: wheels of the package and every dependency, install.sh, unit
	rm -rf $(BUNDLE_DIR)
	mkdir -p $(BUNDLE_DIR)/wheels $(BUNDLE_DIR)/deploy/systemd $(BUNDLE_DIR)/docs $(BUNDLE_DIR)/config $(DIST)
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m pip wheel --quiet --disable-pip-version-check --wheel-dir $(BUNDLE_DIR)/wheels .
	cp deploy/install.sh deploy/giamsat.yml deploy/web-config.example.yml $(BUNDLE_DIR)/deploy/
	cp deploy/systemd/giamsat.service $(BUNDLE_DIR)/deploy/systemd/
	cp docs/*.md $(BUNDLE_DIR)/docs/ 2>/dev/null || true
	cp config/*.yml $(BUNDLE_DIR)/config/ 2>/dev/null || true
	printf '#!/bin/sh\n# Offline install: see deploy/install.sh --help.\nexec "$$(dirname "$$0")/deploy/install.sh" "$$@"\n' >$(BUNDLE_DIR)/install.sh
	chmod 0755 $(BUNDLE_DIR)/install.sh $(BUNDLE_DIR)/deploy/install.sh
	tar -C $(BUILD) -czf $(DIST)/$(BUNDLE).tar.gz $(BUNDLE)
	@echo "$(DIST)/$(BUNDLE).tar.gz: copy it over, then: tar xzf $(BUNDLE).tar.gz && sudo $(BUNDLE)/install.sh"

clean: ## remove build outputs (build/, dist/)
	rm -rf build dist

demo: ## simulated province + agent + Prometheus with the shipped rules (root; prints URLs)
	bash deploy/demo/demo.sh start

demo-stop: ## stop the demo and remove every namespace and file it made
	bash deploy/demo/demo.sh stop

demo-cut: ## cut a district's link in the demo (SITE=vx)
	bash deploy/demo/demo.sh cut $(or $(SITE),vx)

demo-restore: ## restore it (SITE=vx)
	bash deploy/demo/demo.sh restore $(or $(SITE),vx)

.PHONY: help run test lint typecheck bench bundle clean demo demo-stop demo-cut demo-restore
