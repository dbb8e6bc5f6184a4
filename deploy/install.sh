#!/bin/sh
# Install (or upgrade, or remove) the giamsat agent as a hardened systemd service.
#
#   sudo ./install.sh                 install or upgrade from this source tree or offline bundle
#   sudo ./install.sh --uninstall     remove program and unit; keep /etc/giamsat and /var/lib/giamsat
#   sudo ./install.sh --uninstall --purge   remove those too, and the giamsat user
#
# Options:
#   --root DIR      install into DIR as if it were / (tests, image building); DESTDIR=DIR works too
#   --prefix DIR    where the virtualenv goes (default /opt/giamsat)
#   --python PY     the Python (>= 3.11) to build the virtualenv with (default python3)
#   --no-enable     install the unit but do not enable it
#
# Idempotent: running it again upgrades the program and the unit, and never touches an existing
# /etc/giamsat/giamsat.yml or the state directory's contents. From an offline bundle (make bundle) it
# installs with `pip install --no-index --find-links wheels/`: no network needed.
set -eu
# An inherited PYTHONPATH/PYTHONHOME would make the new virtualenv see (and pip skip) other packages.
unset PYTHONPATH PYTHONHOME

ROOT=${DESTDIR:-}
PREFIX=/opt/giamsat
PYTHON=python3
ACTION=install
PURGE=0
ENABLE=1

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "giamsat: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift ;;
    --root=*) ROOT=${1#--root=} ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift ;;
    --prefix=*) PREFIX=${1#--prefix=} ;;
    --python) [ $# -ge 2 ] || die "--python needs a program"; PYTHON=$2; shift ;;
    --python=*) PYTHON=${1#--python=} ;;
    --uninstall) ACTION=uninstall ;;
    --purge) PURGE=1 ;;
    --no-enable) ENABLE=0 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[ "$PURGE" = 0 ] || [ "$ACTION" = uninstall ] || die "--purge only goes with --uninstall"
case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path" ;; esac
ROOT=${ROOT%/}
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || ROOT=
fi

USER_NAME=giamsat
ETC=/etc/giamsat
STATE=/var/lib/giamsat
UNIT_DIR=/etc/systemd/system
UNIT=giamsat.service
SYSUSERS=/usr/lib/sysusers.d/giamsat.conf
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)   # the source tree or the unpacked bundle (both keep deploy/ here)

[ "$(id -u)" = 0 ] || [ -n "$ROOT" ] || die "run as root (or give --root DIR to install into a directory)"

# systemd is "running" only when it is PID 1 of this machine, and we install into /.
systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

uid_of() { awk -F: -v u="$1" '$1 == u { print $3 }' "$ROOT/etc/passwd" 2>/dev/null; }
gid_of() { awk -F: -v g="$1" '$1 == g { print $3 }' "$ROOT/etc/group" 2>/dev/null; }

# chown only when we can (root) and the user exists in the target root: numeric ids, so it also works
# for a --root whose /etc/passwd is not this machine's.
own() {
  owner=$1; shift
  [ "$(id -u)" = 0 ] || return 0
  u=$(uid_of "${owner%%:*}"); g=$(gid_of "${owner#*:}")
  [ "${owner%%:*}" = root ] && u=0
  [ -n "$u" ] && [ -n "$g" ] || return 0
  chown "$u:$g" "$@"
}

create_user() {
  mkdir -p "$ROOT$(dirname "$SYSUSERS")"
  printf 'u %s - "giamsat monitoring agent" %s /usr/sbin/nologin\n' "$USER_NAME" "$STATE" >"$ROOT$SYSUSERS"
  if [ -n "$(uid_of "$USER_NAME")" ]; then
    return 0
  fi
  if command -v systemd-sysusers >/dev/null 2>&1; then
    mkdir -p "$ROOT/etc"
    if [ -n "$ROOT" ]; then systemd-sysusers --root="$ROOT" "$ROOT$SYSUSERS"; else systemd-sysusers "$SYSUSERS"; fi
  elif [ -z "$ROOT" ] && command -v useradd >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir "$STATE" --shell /usr/sbin/nologin \
      --comment "giamsat monitoring agent" "$USER_NAME"
  else
    say "cannot create user $USER_NAME here (no systemd-sysusers); create it before starting the service"
    return 0
  fi
  say "created system user $USER_NAME"
}

find_wheels() {
  for d in "$SRC/wheels" "$HERE/wheels"; do
    if ls "$d"/giamsat_agent-*.whl >/dev/null 2>&1; then echo "$d"; return 0; fi
  done
  return 1
}

install_program() {
  venv=$ROOT$PREFIX
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$PYTHON is older than Python 3.11; give --python python3.11 (or newer)"
  if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
    say "created virtualenv $PREFIX"
  fi
  if wheels=$(find_wheels); then
    # Offline bundle: only the wheels shipped next to this script, never an index.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
      --find-links "$wheels" --upgrade giamsat-agent
    say "installed giamsat-agent from the offline bundle ($wheels)"
  elif [ -f "$SRC/pyproject.toml" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$SRC"
    say "installed giamsat-agent from the source tree $SRC"
  else
    die "neither wheels/ (offline bundle) nor pyproject.toml (source tree) found next to $HERE"
  fi
  mkdir -p "$ROOT/usr/local/bin"
  ln -sfn "$PREFIX/bin/giamsat" "$ROOT/usr/local/bin/giamsat"
  doc=$ROOT$PREFIX/share/doc/giamsat
  mkdir -p "$doc"
  for f in "$SRC"/docs/*.md "$SRC/config/example.yml"; do
    [ -f "$f" ] && cp "$f" "$doc/"
  done
  # For the province's Prometheus, Alertmanager and Grafana: rules, examples, dashboards.
  share=$ROOT$PREFIX/share/giamsat
  rm -rf "$share"
  mkdir -p "$share"
  for d in prometheus grafana; do
    [ -d "$HERE/$d" ] && cp -R "$HERE/$d" "$share/"
  done
  rm -rf "$share/grafana/generate.py" "$share/prometheus/tests"
  return 0
}

install_config() {
  mkdir -p "$ROOT$ETC" "$ROOT$ETC/secrets"
  chmod 0750 "$ROOT$ETC" "$ROOT$ETC/secrets"
  own root:"$USER_NAME" "$ROOT$ETC" "$ROOT$ETC/secrets"
  if [ -e "$ROOT$ETC/giamsat.yml" ]; then
    say "keeping existing $ETC/giamsat.yml"
  else
    install -m 0640 "$HERE/giamsat.yml" "$ROOT$ETC/giamsat.yml"
    own root:"$USER_NAME" "$ROOT$ETC/giamsat.yml"
    say "wrote $ETC/giamsat.yml: edit it, then run 'giamsat doctor'"
  fi
  # Examples are ours to refresh; the files an operator writes are not.
  install -m 0640 "$HERE/web-config.example.yml" "$ROOT$ETC/web-config.example.yml"
  own root:"$USER_NAME" "$ROOT$ETC/web-config.example.yml"
  mkdir -p "$ROOT$STATE"
  chmod 0750 "$ROOT$STATE"
  own "$USER_NAME:$USER_NAME" "$ROOT$STATE"
}

install_unit() {
  mkdir -p "$ROOT$UNIT_DIR"
  tmp=$ROOT$UNIT_DIR/.$UNIT.new
  sed -e "s#/opt/giamsat/#$PREFIX/#g" "$HERE/systemd/$UNIT" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$ROOT$UNIT_DIR/$UNIT"
  say "installed $UNIT_DIR/$UNIT"
  if systemd_running; then
    systemctl daemon-reload
    if [ "$ENABLE" = 1 ]; then
      systemctl enable --quiet "$UNIT"
      say "enabled $UNIT"
    fi
    if systemctl is-active --quiet "$UNIT"; then
      systemctl restart "$UNIT"
      say "restarted the running service with the new version"
    else
      say "start it with: systemctl start $UNIT"
    fi
  elif [ "$ENABLE" = 1 ] && command -v systemctl >/dev/null 2>&1; then
    # No running systemd (container, chroot, --root): enabling only creates the symlinks, offline.
    systemctl --root="${ROOT:-/}" enable --quiet "$UNIT" 2>/dev/null &&
      say "systemd is not running here: enabled $UNIT offline (symlinks only); it starts at next boot" ||
      say "systemd is not running here: skipped enabling $UNIT"
  else
    say "systemd is not running here: skipped systemctl; enable $UNIT on the target machine"
  fi
}

uninstall() {
  if systemd_running; then
    systemctl disable --now --quiet "$UNIT" 2>/dev/null || true
  elif command -v systemctl >/dev/null 2>&1 && [ -e "$ROOT$UNIT_DIR/$UNIT" ]; then
    systemctl --root="${ROOT:-/}" disable --quiet "$UNIT" 2>/dev/null || true
    say "systemd is not running here: skipped stopping the service"
  fi
  rm -f "$ROOT$UNIT_DIR/$UNIT" "$ROOT$UNIT_DIR/multi-user.target.wants/$UNIT"
  if systemd_running; then systemctl daemon-reload; fi
  rm -rf "$ROOT$PREFIX"
  if [ -L "$ROOT/usr/local/bin/giamsat" ]; then rm -f "$ROOT/usr/local/bin/giamsat"; fi
  say "removed $PREFIX and $UNIT"
  if [ "$PURGE" = 1 ]; then
    rm -rf "$ROOT$ETC" "$ROOT$STATE" "$ROOT/var/lib/private/giamsat"
    if [ -n "$(uid_of "$USER_NAME")" ] && command -v userdel >/dev/null 2>&1; then
      if [ -n "$ROOT" ]; then userdel --root "$ROOT" "$USER_NAME"; else userdel "$USER_NAME"; fi
      say "removed user $USER_NAME"
    fi
    rm -f "$ROOT$SYSUSERS"
    say "purged $ETC and $STATE"
  else
    say "kept $ETC and $STATE (use --uninstall --purge to remove them)"
  fi
}

if [ "$ACTION" = uninstall ]; then
  uninstall
  exit 0
fi
create_user
install_program
install_config
install_unit
say "done. Next: edit $ETC/giamsat.yml, then: giamsat check-config $ETC/giamsat.yml && giamsat doctor"
