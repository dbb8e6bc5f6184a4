#!/bin/sh
# Build giamsat_<version>_<arch>.deb from a wheel set, offline: `make deb` runs this.
#
#   deploy/debian/build-deb.sh --wheels DIR --version VERSION --out DIR [--python PY] [--deb-version V]
#
# VERSION is the Python package's; the Debian version is made from it unless --deb-version gives one.
#
# The program and its dependencies go into their own tree, /usr/lib/giamsat, laid out as a virtualenv of
# Debian's /usr/bin/python3 but made here, at build time, without the venv module: a pyvenv.cfg, a
# bin/python3 symlink to /usr/bin/python3 and the wheels installed with `pip install --no-index --root
# STAGE --prefix /usr/lib/giamsat` by the build machine's Python of the same minor version. The target
# then needs neither python3-venv nor pip nor a package index. Byte code is compiled by the postinst,
# as Debian's own Python packages do, and removed by the prerm.
set -eu
unset PYTHONPATH PYTHONHOME

die() { echo "build-deb.sh: $*" >&2; exit 1; }

WHEELS= VERSION= OUT= PYTHON=python3 DEBVER=
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS=$2; shift ;;
    --version) VERSION=$2; shift ;;
    --out) OUT=$2; shift ;;
    --python) PYTHON=$2; shift ;;
    --deb-version) DEBVER=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[ -n "$WHEELS" ] && [ -n "$VERSION" ] && [ -n "$OUT" ] || die "--wheels, --version and --out are required"
ls "$WHEELS"/giamsat_agent-*.whl >/dev/null 2>&1 || die "no giamsat_agent wheel in $WHEELS (run make wheels)"
for tool in dpkg-deb readelf strip gzip; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install dpkg binutils gzip)"
done

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
PKG=giamsat
PREFIX=/usr/lib/giamsat
ARCH=$(dpkg --print-architecture)
PYVER=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
PYNEXT=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')
# PEP 440 pre/dev/post releases to Debian's ordering: 1.0rc1 -> 1.0~rc1 (before 1.0), 1.0.post1 -> 1.0+post1.
[ -n "$DEBVER" ] ||
  DEBVER=$(printf '%s' "$VERSION" | sed -E 's/\.?(a|b|rc|dev)([0-9]+)/~\1\2/g; s/\.?post([0-9]+)/+post\1/')
MAINTAINER=${DEB_MAINTAINER:-giamsat maintainers <maintainers@users.noreply.h-seed-8c679c65.example>}
# Reproducible dates: the last commit's, else now.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$SRC" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/giamsat-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
chmod 0755 "$STAGE"
D=$STAGE/root
mkdir -p "$D/DEBIAN"

# --- the program tree -------------------------------------------------------------------------------
# --ignore-installed: the building Python's own environment must not make pip skip a dependency.
# --no-compile: no byte code in the package (the postinst compiles it for the target's interpreter).
PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 "$PYTHON" -m pip install --quiet \
  --no-index --find-links "$WHEELS" --ignore-installed --no-compile --no-warn-script-location \
  --root "$D" --prefix "$PREFIX" "giamsat-agent==$VERSION"
SITE=$D$PREFIX/lib/python$PYVER/site-packages
[ -d "$SITE/agent" ] || die "pip did not install into $PREFIX/lib/python$PYVER/site-packages"
# Only the agent's command; dependencies' commands would carry this build machine's interpreter path.
find "$D$PREFIX/bin" -mindepth 1 ! -name giamsat -delete
sed -i "1s|^#!.*|#!$PREFIX/bin/python3|" "$D$PREFIX/bin/giamsat"
ln -s ../../../bin/python3 "$D$PREFIX/bin/python3"   # /usr/bin/python3
ln -s python3 "$D$PREFIX/bin/python"
cat >"$D$PREFIX/pyvenv.cfg" <<CFG
home = /usr/bin
include-system-site-packages = false
version = $PYVER
CFG
find "$D$PREFIX" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$D$PREFIX" \( -name '*.pyc' -o -name .DS_Store \) -delete
# Wheels' extension modules often keep their symbols: strip them (Debian policy; a third of the size).
find "$SITE" -type f -name '*.so*' -exec strip --strip-unneeded --remove-section=.comment --remove-section=.note {} +
mkdir -p "$D/usr/bin"
ln -s ../lib/giamsat/bin/giamsat "$D/usr/bin/giamsat"

# --- configuration, unit, data, docs ----------------------------------------------------------------
install -d -m 0750 "$D/etc/giamsat"
install -m 0640 "$SRC/deploy/giamsat.yml" "$D/etc/giamsat/giamsat.yml"
sed "s#/opt/giamsat/#$PREFIX/#g" "$SRC/deploy/web-config.example.yml" >"$D/etc/giamsat/web-config.example.yml"
chmod 0640 "$D/etc/giamsat/web-config.example.yml"
# The unit is deploy/systemd/giamsat.service with the program's and the docs' paths of this layout,
# exactly as install.sh rewrites the program's path for its --prefix.
install -d "$D/lib/systemd/system"
sed -e "s#^Documentation=.*#Documentation=man:giamsat(1) file:/usr/share/doc/giamsat/deploy.md.gz#" \
  -e "s#/opt/giamsat/#$PREFIX/#g" \
  -e "s#^\# Installed by deploy/install.sh into /etc/systemd/system/.*#\# Installed by the giamsat package into /lib/systemd/system/.#" \
  "$SRC/deploy/systemd/giamsat.service" >"$D/lib/systemd/system/giamsat.service"

SHARE=$D/usr/share/giamsat
install -d "$SHARE/prometheus/rules" "$SHARE/grafana/dashboards" \
  "$SHARE/grafana/provisioning/dashboards" "$SHARE/grafana/provisioning/datasources"
install -m 0644 "$SRC"/deploy/prometheus/rules/*.yml "$SHARE/prometheus/rules/"
install -m 0644 "$SRC/deploy/prometheus/alertmanager.yml" "$SHARE/prometheus/alertmanager.example.yml"
install -m 0644 "$SRC/deploy/prometheus/prometheus.yml" "$SHARE/prometheus/prometheus.example.yml"
install -m 0644 "$SRC/deploy/prometheus/scrape-file-sd.yml" "$SHARE/prometheus/scrape-file-sd.example.yml"
install -m 0644 "$SRC"/deploy/grafana/dashboards/*.json "$SHARE/grafana/dashboards/"
install -m 0644 "$SRC"/deploy/grafana/provisioning/dashboards/*.yml "$SHARE/grafana/provisioning/dashboards/"
install -m 0644 "$SRC"/deploy/grafana/provisioning/datasources/*.yml "$SHARE/grafana/provisioning/datasources/"

DOC=$D/usr/share/doc/$PKG
install -d "$DOC/examples"
install -m 0644 "$SRC"/docs/*.md "$SRC/README.md" "$DOC/"
install -m 0644 "$SRC/CHANGELOG.md" "$DOC/"
install -m 0644 "$SRC"/config/*.yml "$DOC/examples/"
DATE=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
# A native package: its changelog is the Debian-format one; the project's own is CHANGELOG.md.gz.
printf '%s (%s) bookworm; urgency=medium\n\n  * Release %s: see CHANGELOG.md.gz for its changes.\n\n -- %s  %s\n' \
  "$PKG" "$DEBVER" "$VERSION" "$MAINTAINER" "$DATE" >"$DOC/changelog"
# Policy 12.3: documentation larger than 4 kB is compressed (as dh_compress does); the changelogs always.
find "$DOC" -type f \( -name 'changelog*' -o -size +4k \) ! -name copyright -exec gzip -9n {} +
YEARS=$(git -C "$SRC" log --format=%ad --date=format:%Y 2>/dev/null | sort -u | sed -n '1p;$p' | paste -sd-)
"$PYTHON" "$HERE/copyright.py" "$SITE" "$PREFIX/lib/python$PYVER/site-packages" \
  "${YEARS:-$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)}" >"$DOC/copyright"
install -d "$D/usr/share/man/man1" "$D/usr/share/lintian/overrides"
gzip -9n <"$HERE/giamsat.1" >"$D/usr/share/man/man1/giamsat.1.gz"
install -m 0644 "$HERE/lintian-overrides" "$D/usr/share/lintian/overrides/$PKG"

# --- control ----------------------------------------------------------------------------------------
# Shared-library dependencies of the wheels' extension modules: glibc (the highest symbol version any
# of them needs) and libgcc_s (Rust and C++ extensions); any other library must be vendored in the tree.
GLIBC=$(find "$SITE" -type f -name '*.so*' -exec readelf -W --dyn-syms {} + 2>/dev/null |
  grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
DEPS="libc6 (>= ${GLIBC:-2.17})"
needed=$(find "$SITE" -type f -name '*.so*' -exec readelf -W -d {} + 2>/dev/null |
  sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u)
for lib in $needed; do
  case "$lib" in
    libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|ld-linux-x86-64.so.2|libutil.so.1) ;;
    libgcc_s.so.1) DEPS="$DEPS, libgcc-s1" ;;
    *) find "$SITE" -name "$lib" | grep -q . || die "an extension module needs $lib, which no wheel vendors" ;;
  esac
done
# procps: /bin/kill for the unit's ExecReload. passwd: useradd/userdel in the maintainer scripts.
DEPS="python3 (>= $PYVER), python3 (<< $PYNEXT), $DEPS, passwd, procps"
SIZE=$(du -k -s --apparent-size --exclude=DEBIAN "$D" | cut -f1)
sed -e "s/@VERSION@/$DEBVER/" -e "s/@ARCH@/$ARCH/" -e "s/@DEPENDS@/$DEPS/" -e "s/@SIZE@/$SIZE/" \
  -e "s/@MAINTAINER@/$MAINTAINER/" "$HERE/control.in" >"$D/DEBIAN/control"
printf '/etc/giamsat/giamsat.yml\n/etc/giamsat/web-config.example.yml\n' >"$D/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$HERE/$s" "$D/DEBIAN/$s"; done
(cd "$D" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print0 | LC_ALL=C sort -z |
  xargs -0 md5sum | sed 's#  \./#  #') >"$D/DEBIAN/md5sums"
chmod 0644 "$D/DEBIAN/md5sums" "$D/DEBIAN/control" "$D/DEBIAN/conffiles"

# Modes as Debian wants them whatever the umask: directories 0755 (but /etc/giamsat), files 0644,
# commands 0755; ownership root:root (the postinst gives the group to the giamsat user).
find "$D" -path "$D/DEBIAN" -prune -o -type d ! -path "$D/etc/giamsat" -exec chmod 0755 {} +
find "$D/usr" "$D/lib" -type f -exec chmod 0644 {} +
chmod 0755 "$D$PREFIX/bin/giamsat"
find "$D" -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUT"
DEB=$OUT/${PKG}_${DEBVER}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$D" "$DEB" >/dev/null
echo "$DEB"
