#!/usr/bin/env bash
# Build a local Debian bookworm base image with Python 3 from Debian's packages, without any
# container registry: debootstrap a root file system from the machine's configured Debian mirror
# and `podman import` it as localhost/collector-base:bookworm.
#
# The result is cached: nothing is done when the image already exists (FORCE=1 rebuilds).
#
# Usage: scripts/base-image.sh            (root; installs podman and debootstrap when missing)
# Env:   BASE_TAG   image name to create  (default localhost/collector-base:bookworm)
#        SUITE      Debian suite          (default bookworm)
#        MIRROR     Debian mirror URL     (default: read from /etc/apt/sources.list[.d])
#        FORCE=1    rebuild even if the image exists
set -euo pipefail

BASE_TAG="${BASE_TAG:-localhost/collector-base:bookworm}"
SUITE="${SUITE:-bookworm}"
PACKAGES="python3,python3-venv,python3-pip,ca-certificates"

log() { printf '[base-image] %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    log "must run as root (debootstrap needs it)"
    exit 1
  fi
}

install_missing() {
  local missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# The first http(s) URI of a Debian (not -security) deb source: deb822 *.sources first, then the
# one-line format.
debian_mirror() {
  local uri=""
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    uri="$(awk '
      /^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }
    ' "$f")"
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ] && [ -e /etc/apt/sources.list ]; then
    uri="$(awk '
      $1 == "deb" {
        for (i = 2; i <= NF; i++) {
          if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; continue }
          if ($i !~ /security/) { print $i; exit }
          break
        }
      }
    ' /etc/apt/sources.list)"
  fi
  printf '%s' "${uri:-http://deb.debian.org/debian}"
}

main() {
  need_root
  install_missing

  if [ "${FORCE:-0}" != 1 ] && podman image exists "$BASE_TAG"; then
    log "$BASE_TAG exists, nothing to do (FORCE=1 rebuilds)"
    return 0
  fi

  local mirror="${MIRROR:-$(debian_mirror)}"
  ROOTFS="$(mktemp -d /var/tmp/collector-base.XXXXXX)"
  trap 'rm -rf "$ROOTFS"' EXIT
  local rootfs="$ROOTFS"

  log "debootstrap $SUITE from $mirror into $rootfs"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror"

  # Slim the tree: the apt cache and lists are not needed at run time.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

  log "importing as $BASE_TAG"
  tar -C "$rootfs" -c . | podman import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$BASE_TAG"
  podman image ls "$BASE_TAG"
}

main "$@"
