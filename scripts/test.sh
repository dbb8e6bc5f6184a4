#!/usr/bin/env bash
# Installs everything the tests need (Debian packages when missing, Python packages in .venv), then
# runs lint, type checks and the whole test suite. Root is needed for apt-get and network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  snmpd snmp                      # real SNMP agent and net-snmp tools (snmpget/snmpwalk) for comparisons
  openssh-server openssh-client   # real sshd for the SSH collector
  prometheus                      # prometheus + promtool
  prometheus-node-exporter        # side-by-side value comparison and benchmarks
  prometheus-snmp-exporter prometheus-blackbox-exporter fping   # peers for benchmarks
  nftables iproute2               # network namespaces, loss and outage injection
  dnsmasq-base                    # a real DNS server for the DNS probe
  victoria-metrics                # remote-write receiver
  openssl                         # test certificates for remote write over TLS
  util-linux mount                # mount/umount of a small tmpfs (remote-write full-disk test)
  systemd                         # systemd-analyze for the unit checks
  prometheus-alertmanager         # amtool check-config for the shipped alertmanager.yml example
  python3-venv
  python3-yaml                    # PyYAML on Debian's own libyaml (no nesting limit): the YAML reader must not use it
  make                            # make bundle (offline install tarball) in the install tests
  passwd procps                   # useradd/chpasswd/userdel and pkill for the SSH password test
  faketime                        # libfaketime: step the wall clock of one agent process (clock tests)
  binutils lintian                # make deb (readelf, strip) and the package check
  debootstrap systemd-container   # the system test: a Debian 12 root booted with systemd-nspawn
  chrony                          # a real NTP server for the ntp collector (replaces systemd-timesyncd)
  chromium fonts-dejavu-core      # headless browser: the report and the status page in a real browser, Vietnamese glyphs
)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# Three worker processes, one test file each at a time (module fixtures stay in one process): most of
# the suite waits on real time (timeouts, alert timings, servers starting), so three overlap well on two
# cores; serially it takes about three times as long. `-n 0` as an argument runs it in one process.
exec .venv/bin/pytest -n 3 --dist loadfile "$@"
