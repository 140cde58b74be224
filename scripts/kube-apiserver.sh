#!/usr/bin/env bash
# Build (once) a real kube-apiserver v1.20.2 from Debian bookworm's `kubernetes` source package,
# for the Kubernetes SD integration tests (tests/integration/kube.py, docs/kube-apiserver.md).
#
# Prints the absolute path of the kube-apiserver binary as the LAST line on stdout. Everything
# else goes to stderr. Idempotent: when the cached binary exists and answers `--version`, nothing
# is installed or built. Also installs Debian's etcd (etcd-server, etcd-client) which the tests
# need next to the apiserver.
#
# Cost of a cold build on 2 cores: about 10 min, ~3 GB disk during the build (deleted afterwards,
# only the 110 MB binary stays), ~1.3 GB RAM. Debian bookworm only; needs root for apt-get.
#
# Usage: scripts/kube-apiserver.sh
# Env:   COLLECTOR_CACHE   cache root (default /var/cache/collector); the binary goes to
#                          $COLLECTOR_CACHE/kube-apiserver-v1.20.2/kube-apiserver
#        FORCE=1           rebuild even if the cached binary works
#        KEEP_BUILD=1      keep the source tree and GOCACHE (for debugging a failed build)
set -euo pipefail

K8S_VERSION="v1.20.2"
CACHE_ROOT="${COLLECTOR_CACHE:-/var/cache/collector}"
CACHE_DIR="${CACHE_ROOT}/kube-apiserver-${K8S_VERSION}"
BINARY="${CACHE_DIR}/kube-apiserver"
DEBSRC_FILE=/etc/apt/sources.list.d/collector-debsrc.sources

log() { printf '[kube-apiserver.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

binary_works() {
  # The orig tarball is a `git archive`, so the version is stamped as v1.20.2; accept any
  # "Kubernetes v1.20.x" in case the packaging changes how it is derived.
  [ -x "$BINARY" ] && "$BINARY" --version 2>/dev/null | grep -q "^Kubernetes v1\.20\."
}

have_pkg() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

need_root() {
  if [ "$(id -u)" != 0 ]; then
    log "must run as root (apt-get); or build elsewhere and put the binary at $BINARY"
    exit 1
  fi
}

# deb-src lines are needed for `apt-get source`. The images carry only "Types: deb": derive a
# deb-src stanza from the first stanza of debian.sources (the main archive, not -security).
enable_deb_src() {
  if grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  local src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ]; then
    log "enabling deb-src in $DEBSRC_FILE (from the first stanza of $src)"
    sed -n '1,/^$/p' "$src" \
      | sed 's/^Types: deb$/Types: deb-src/; s/^Suites: .*/Suites: bookworm/' >"$DEBSRC_FILE"
  else
    local mirror
    mirror="$(awk '$1 == "deb" && $2 ~ /^http/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)"
    [ -n "$mirror" ] || { log "no Debian mirror found in /etc/apt/sources.list[.d]"; exit 1; }
    log "enabling deb-src in $DEBSRC_FILE (mirror $mirror)"
    printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\n' "$mirror" >"$DEBSRC_FILE"
  fi
  APT_UPDATED=0
}

APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    apt-get update -qq >&2
    APT_UPDATED=1
  fi
}

install_missing() {
  local missing=() p
  # golang-go + rsync: Build-Depends used by `make WHAT=...`; make/gcc are usually present already.
  for p in golang-go rsync make gcc libc6-dev etcd-server etcd-client; do
    have_pkg "$p" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_update_once
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

if [ "${FORCE:-0}" != 1 ] && binary_works; then
  log "reusing $BINARY ($("$BINARY" --version))"
  # etcd is needed by the tests too; make sure it is there even when the binary is cached.
  if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
    need_root
    install_missing
  fi
  echo "$BINARY"
  exit 0
fi

need_root
mkdir -p "$CACHE_DIR"

# One build at a time (two test sessions starting the script at once).
exec 9>"${CACHE_DIR}/.lock"
if ! flock -n 9; then
  log "another build holds ${CACHE_DIR}/.lock; waiting for it"
  flock 9
  if [ "${FORCE:-0}" != 1 ] && binary_works; then
    log "built by the other process: $BINARY"
    echo "$BINARY"
    exit 0
  fi
fi

enable_deb_src
install_missing
apt_update_once # deb-src indexes are needed even if all packages were installed already
log "go: $(go version)"

BUILD_DIR="$(mktemp -d "${CACHE_DIR}/build.XXXXXX")"
cleanup() {
  if [ "${KEEP_BUILD:-0}" = 1 ]; then
    log "KEEP_BUILD=1: leaving $BUILD_DIR"
  else
    log "removing $BUILD_DIR"
    # Go module/build caches are written read-only; make them removable first.
    chmod -R u+w "$BUILD_DIR" 2>/dev/null || true
    rm -rf "$BUILD_DIR"
  fi
}
trap cleanup EXIT

cd "$BUILD_DIR"
log "apt-get source --download-only kubernetes (into $BUILD_DIR)"
apt-get source -qq --download-only kubernetes >&2
orig="$(find . -maxdepth 1 -name 'kubernetes_*.orig.tar.gz' -printf '%f\n' | head -n1)"
if [ -z "$orig" ]; then
  log "apt-get source did not fetch kubernetes_*.orig.tar.gz (is deb-src enabled?)"
  exit 1
fi
log "extracting $orig"
tar xzf "$orig"
src="$(find . -mindepth 1 -maxdepth 1 -type d -name 'kubernetes*' | head -n1)"
if [ -z "$src" ] || [ ! -f "$src/Makefile" ]; then
  log "no source tree with a Makefile in $orig"
  exit 1
fi
cd "$src"
log "source tree $(pwd)"

# The k8s 1.20 hack scripts build in GOPATH mode (GO111MODULE=off) from vendor/; keep every Go
# cache inside the build dir so it is deleted with it, and never touch the network.
export GOCACHE="$BUILD_DIR/gocache" GOPATH="$BUILD_DIR/gopath" GOPROXY=off GOFLAGS=
export GOTMPDIR="$BUILD_DIR/gotmp" TMPDIR="$BUILD_DIR/tmp"
mkdir -p "$GOCACHE" "$GOPATH" "$GOTMPDIR" "$TMPDIR"

start=$(date +%s)
log "make WHAT=cmd/kube-apiserver (about 10 min on 2 cores)"
make WHAT=cmd/kube-apiserver >&2
built="$(pwd)/_output/local/bin/linux/$(go env GOARCH)/kube-apiserver"
if [ ! -x "$built" ]; then
  built="$(find "$(pwd)/_output" -type f -name kube-apiserver -perm -u+x | head -n1)"
fi
if [ -z "$built" ] || [ ! -x "$built" ]; then
  log "make finished but no kube-apiserver binary in _output"
  exit 1
fi
log "built in $(($(date +%s) - start)) s: $built ($(du -h "$built" | cut -f1))"

install -m 0755 "$built" "${BINARY}.tmp"
mv -f "${BINARY}.tmp" "$BINARY"
binary_works || { log "$BINARY does not answer --version with Kubernetes v1.20.x: $("$BINARY" --version 2>&1 || true)"; exit 1; }
log "ok: $("$BINARY" --version)"
echo "$BINARY"
