#!/usr/bin/env bash
# `make demo` / `make demo-stop`: a simulated province (network namespaces), the giamsat agent probing
# it and a real Prometheus with the shipped rules, left running to explore. Needs root.
#   deploy/demo/demo.sh start | stop | cut [SITE] | restore [SITE] | status
set -euo pipefail
cd "$(dirname "$0")/../.."

DIR=${DEMO_DIR:-/tmp/giamsat-demo}
# A running demo remembers its prefix and subnets, so `stop` removes exactly what `start` made.
PREFIX=${DEMO_PREFIX:-$(cat "$DIR/prefix" 2>/dev/null || echo gsdemo)}
BASE=${DEMO_BASE:-$(cat "$DIR/base" 2>/dev/null || echo 60)}   # 198.19.$BASE.0 - 198.19.$((BASE+12)).255
AGENT_PORT=${DEMO_AGENT_PORT:-19469}
PROM_PORT=${DEMO_PROM_PORT:-19090}
PY=${PYTHON:-python3}
province() { "$PY" deploy/demo/province.py "$@" --prefix "$PREFIX" --base "$BASE"; }

need_root() {
  if [ "$(id -u)" != 0 ]; then echo "the demo creates network namespaces: run it as root" >&2; exit 1; fi
}

stop_pid() {  # stop one process we started, by the PID we recorded
  local f=$1
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

wait_http() {
  for _ in $(seq 150); do
    if "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "no answer from $1; see the logs in $DIR" >&2
  return 1
}

start() {
  need_root
  if [ -e "$DIR/giamsat.yml" ]; then echo "a demo is already set up in $DIR; run make demo-stop first" >&2; exit 1; fi
  mkdir -p "$DIR/state" "$DIR/prometheus"
  echo "$PREFIX" > "$DIR/prefix"
  echo "$BASE" > "$DIR/base"
  if [ ! -x .venv/bin/giamsat ]; then
    echo "installing giamsat into .venv"
    "$PY" -m venv .venv && .venv/bin/pip install -q -e . >/dev/null
  fi
  echo "building the simulated province (namespaces ${PREFIX}*)"
  province up --state-dir "$DIR/state" > "$DIR/giamsat.yml"
  .venv/bin/giamsat check-config "$DIR/giamsat.yml" >/dev/null
  # Vị Xuyên's router and UPS answer SNMP (snmpd in its namespace; it writes its own PID file)
  province snmpd-conf > "$DIR/snmpd.conf"
  ip netns exec "${PREFIX}a" snmpd -C -c "$DIR/snmpd.conf" -p "$DIR/snmpd.pid" -Lf "$DIR/snmpd.log"
  .venv/bin/giamsat run --config.file "$DIR/giamsat.yml" --web.listen-address "127.0.0.1:$AGENT_PORT" \
    >"$DIR/agent.log" 2>&1 &
  echo $! > "$DIR/agent.pid"
  wait_http "http://127.0.0.1:$AGENT_PORT/-/ready"

  cp -r deploy/prometheus/rules "$DIR/prometheus/"
  cat > "$DIR/prometheus/prometheus.yml" <<YAML
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: [rules/giamsat.rules.yml]
scrape_configs:
  - job_name: giamsat
    static_configs: [{targets: ['127.0.0.1:$AGENT_PORT']}]
YAML
  prometheus --config.file="$DIR/prometheus/prometheus.yml" --storage.tsdb.path="$DIR/prometheus/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$DIR/prometheus.log" 2>&1 &
  echo $! > "$DIR/prometheus.pid"
  wait_http "http://127.0.0.1:$PROM_PORT/-/ready"

  cat <<TEXT

giamsat demo is running (files and logs in $DIR):
  agent       http://127.0.0.1:$AGENT_PORT/          (status page; /metrics)
  prometheus  http://127.0.0.1:$PROM_PORT/alerts    (shipped rules: SiteDown fires within a minute of
                                                    a cut, the coverage gap of bm-lacnong after 30)
              http://127.0.0.1:$PROM_PORT/graph?g0.expr=site%3Agiamsat_site_state%3Acode&g0.tab=1
  dashboards  import deploy/grafana/dashboards/*.json into a Grafana pointed at the Prometheus above

Try an outage:   make demo-cut SITE=vx      (Huyện Vị Xuyên loses its link; its communes become unreachable;
                                             a commune works too: SITE=vx-daoduc)
                 make demo-restore SITE=vx
Sites: hg (province), vx and bm (districts), vx-daoduc vx-phulinh vx-linhho bm-yenphu bm-minhngoc,
       bm-lacnong (never connected: a coverage gap).
Stop and remove everything:  make demo-stop
TEXT
}

stop() {
  need_root
  stop_pid "$DIR/prometheus.pid"
  stop_pid "$DIR/agent.pid"
  stop_pid "$DIR/snmpd.pid"
  province down
  rm -rf "$DIR"
  echo "demo stopped; namespaces ${PREFIX}* and $DIR removed"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  cut) need_root; province cut --site "${2:-vx}"; echo "cut ${2:-vx}" ;;
  restore) need_root; province restore --site "${2:-vx}"; echo "restored ${2:-vx}" ;;
  *) echo "usage: $0 start|stop|cut [SITE]|restore [SITE]" >&2; exit 2 ;;
esac
