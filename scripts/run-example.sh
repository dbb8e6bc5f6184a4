#!/usr/bin/env bash
# Installs giamsat into .venv and runs it on config/example.yml (this host plus loopback targets).
# Metrics: http://127.0.0.1:9469/metrics   Landing page: http://127.0.0.1:9469/   Stop: Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "python3-venv is missing; installing it"; apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e .
.venv/bin/giamsat check-config config/example.yml
echo "giamsat on http://127.0.0.1:9469/metrics (Ctrl-C to stop)"
exec .venv/bin/giamsat run --config.file config/example.yml "$@"
