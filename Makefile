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
# The wheel set of the package and every dependency: what both the bundle and the .deb install from.
WHEELS ?= $(BUILD)/wheels
PIP_PYTHON := $(if $(wildcard $(PY)),$(PY),$(PYTHON))

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

wheels: ## wheels of the package and every dependency, in WHEELS (build/bundle/wheels; needs the index)
	rm -rf $(WHEELS)
	mkdir -p $(WHEELS)
	$(PIP_PYTHON) -m pip wheel --quiet --disable-pip-version-check --wheel-dir $(WHEELS) .

bundle: wheels ## offline install tarball in dist/: the wheels, install.sh, unit, rules, dashboards, docs
	rm -rf $(BUNDLE_DIR)
	mkdir -p $(BUNDLE_DIR)/wheels $(BUNDLE_DIR)/deploy/systemd $(BUNDLE_DIR)/docs $(BUNDLE_DIR)/config $(DIST)
	cp $(WHEELS)/*.whl $(BUNDLE_DIR)/wheels/
	cp deploy/install.sh deploy/giamsat.yml deploy/web-config.example.yml $(BUNDLE_DIR)/deploy/
	cp deploy/systemd/giamsat.service $(BUNDLE_DIR)/deploy/systemd/
	mkdir -p $(BUNDLE_DIR)/deploy/prometheus $(BUNDLE_DIR)/deploy/grafana
	cp -R deploy/prometheus/rules deploy/prometheus/alertmanager.yml deploy/prometheus/prometheus.yml \
	  deploy/prometheus/scrape-file-sd.yml $(BUNDLE_DIR)/deploy/prometheus/
	cp -R deploy/grafana/dashboards deploy/grafana/provisioning $(BUNDLE_DIR)/deploy/grafana/
	cp docs/*.md $(BUNDLE_DIR)/docs/ 2>/dev/null || true
	cp config/*.yml $(BUNDLE_DIR)/config/ 2>/dev/null || true
	printf '#!/bin/sh\n# Offline install: see deploy/install.sh --help.\nexec "$$(dirname "$$0")/deploy/install.sh" "$$@"\n' >$(BUNDLE_DIR)/install.sh
	chmod 0755 $(BUNDLE_DIR)/install.sh $(BUNDLE_DIR)/deploy/install.sh
	tar -C $(BUILD) -czf $(DIST)/$(BUNDLE).tar.gz $(BUNDLE)
	@echo "$(DIST)/$(BUNDLE).tar.gz: copy it over, then: tar xzf $(BUNDLE).tar.gz && sudo $(BUNDLE)/install.sh"

deb: wheels ## Debian package in dist/ from the wheel set: sudo apt install ./dist/giamsat_*.deb
	bash deploy/debian/build-deb.sh --wheels $(WHEELS) --version $(VERSION) --python $(PIP_PYTHON) --out $(DIST)

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

drill: ## outage drill, shipped rules and alertmanager.yml (root; LOSS_MINUTES=30 CYCLES=3 SIZE=province)
	$(PIP_PYTHON) deploy/demo/drill.py --loss-minutes $(or $(LOSS_MINUTES),30) --cycles $(or $(CYCLES),3) \
	  --size $(or $(SIZE),province)

.PHONY: help run test lint typecheck bench wheels bundle deb clean demo demo-stop demo-cut demo-restore drill
