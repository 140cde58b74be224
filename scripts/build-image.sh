#!/usr/bin/env bash
# Build the collector image with podman, without any registry: the base image is made locally
# from Debian packages by scripts/base-image.sh (cached), and the build uses chroot isolation,
# which works where the container engine has no cgroup/namespace privileges (CI sandboxes).
#
# Usage: scripts/build-image.sh [extra podman build args...]
# Env:   IMAGE       tag to build            (default localhost/collector:dev)
#        BASE_IMAGE  base image              (default localhost/collector-base:bookworm, built
#                    here when missing; set python:3.11-slim where a registry is reachable)
#        ARCHIVE     also `podman save` the image to this path (for `kind load image-archive`)
#        PIP_CA_BUNDLE  CA bundle pip inside the build trusts (default: $PIP_CERT, then
#                    $SSL_CERT_FILE, when set): passed as the build secret `pip-ca`, so a build
#                    behind a TLS-intercepting proxy reaches PyPI; never stored in the image
set -euo pipefail

cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-localhost/collector:dev}"
BASE_IMAGE="${BASE_IMAGE:-localhost/collector-base:bookworm}"

log() { printf '[build-image] %s\n' "$*" >&2; }

if ! command -v podman >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    log "podman is missing; install it (apt-get install podman) or run as root"
    exit 1
  fi
  log "installing podman"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman
fi

if [ "$BASE_IMAGE" = localhost/collector-base:bookworm ]; then
  BASE_TAG="$BASE_IMAGE" scripts/base-image.sh
fi

version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n1)"
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

secret_args=()
ca_bundle="${PIP_CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-}}}"
if [ -n "$ca_bundle" ] && [ -s "$ca_bundle" ]; then
  secret_args=(--secret "id=pip-ca,src=$ca_bundle")
fi

log "building $IMAGE from $BASE_IMAGE"
podman build \
  "${secret_args[@]}" \
  --isolation chroot \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --build-arg CREATED="$created" \
  -t "$IMAGE" \
  "$@" \
  .

if [ -n "${ARCHIVE:-}" ]; then
  log "saving $IMAGE to $ARCHIVE"
  rm -f "$ARCHIVE"
  podman save --format docker-archive -o "$ARCHIVE" "$IMAGE"
fi

podman image ls "$IMAGE"
