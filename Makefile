# Developer and release tasks. `make help` lists them; `make test` is exactly what CI runs.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= config/example.yml
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' agent/__init__.py)
# Wheels with C extensions (pydantic-core, psutil, bcrypt) are built for one Python and one machine:
# the bundle's name says which, so it is not carried to a machine it cannot install on.
PLATFORM := $(shell $(PYTHON) -c 'import platform, sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
BUNDLE := giamsat-$(VERSION)-$(PLATFORM)
BUILD ?= build/bundle
DIST ?= dist
BUNDLE_DIR := $(BUILD)/$(BUNDLE)

.PHONY: help venv run test lint typecheck bench bundle clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-10s %s\n", $$1, $$2 }'

venv: | $(PY) ## create .venv with the package (editable) and the test tools

$(PY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $(PY)

run: | $(PY) ## run the agent in the foreground with CONFIG (default config/example.yml)
	$(VENV)/bin/giamsat run --config.file $(CONFIG)

test: ## lint, type checks and the whole test suite (installs what the tests need; CI runs this)
	bash scripts/test.sh

lint: | $(PY) ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: | $(PY) ## mypy --strict on agent/ collectors/ exporters/
	$(VENV)/bin/mypy

bench: | $(PY) ## run every benchmark in bench/ (each prints figures against its peer tool)
	@set -e; for f in bench/*.py; do [ -e "$$f" ] || continue; echo "== $$f"; $(PY) "$$f"; done

bundle: | $(PY) ## offline install tarball in dist/: wheels of the package and every dependency, installer, unit
	rm -rf $(BUNDLE_DIR)
	mkdir -p $(BUNDLE_DIR)/wheels $(BUNDLE_DIR)/deploy/systemd $(BUNDLE_DIR)/docs $(BUNDLE_DIR)/config $(DIST)
	$(PY) -m pip wheel --quiet --disable-pip-version-check --wheel-dir $(BUNDLE_DIR)/wheels .
	cp deploy/install.sh deploy/giamsat.yml deploy/web-config.example.yml $(BUNDLE_DIR)/deploy/
	cp deploy/systemd/giamsat.service $(BUNDLE_DIR)/deploy/systemd/
	cp docs/*.md $(BUNDLE_DIR)/docs/ 2>/dev/null || true
	cp config/*.yml $(BUNDLE_DIR)/config/ 2>/dev/null || true
	printf '#!/bin/sh\n# Offline install: see deploy/install.sh --help.\nexec "$$(dirname "$$0")/deploy/install.sh" "$$@"\n' >$(BUNDLE_DIR)/install.sh
	chmod 0755 $(BUNDLE_DIR)/install.sh $(BUNDLE_DIR)/deploy/install.sh
	tar -C $(BUILD) -czf $(DIST)/$(BUNDLE).tar.gz $(BUNDLE)
	@echo "$(DIST)/$(BUNDLE).tar.gz: copy it over, then: tar xzf $(BUNDLE).tar.gz && sudo $(BUNDLE)/install.sh"

clean: ## remove build outputs
	rm -rf build dist
