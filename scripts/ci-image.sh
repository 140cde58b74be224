#!/usr/bin/env bash
# CI entry point for the container image: build the Debian base (cached), build the collector
# image from the working tree, then start it and check it (ready, scrapes a loopback target).
#
#   scripts/base-image.sh    debootstrap bookworm + python3 -> localhost/collector-base:bookworm
#                            (skipped when the image exists; FORCE=1 rebuilds it)
#   scripts/build-image.sh   podman build --isolation chroot (always rebuilds the app layers;
#                            unchanged layers come from podman's cache)
#   scripts/smoke-image.sh   buildah run the image: /-/healthy, /-/ready, /metrics, and the
#                            static target on loopback reported "up" in /api/v1/targets
#
# Idempotent: running it twice rebuilds nothing but changed layers and re-runs the smoke test.
# Exits non-zero as soon as a step fails; each step's wall time is printed to stderr.
#
# Usage: scripts/ci-image.sh          (root: debootstrap, podman and buildah need it)
# Env:   everything the three scripts accept (IMAGE, BASE_IMAGE, BASE_TAG, MIRROR, FORCE,
#        ARCHIVE, PIP_CA_BUNDLE, AGENT_PORT, TARGET_PORT, READY_TIMEOUT, UP_TIMEOUT)
set -euo pipefail

cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-localhost/collector:dev}"
BASE_IMAGE="${BASE_IMAGE:-localhost/collector-base:bookworm}"
export IMAGE BASE_IMAGE

log() { printf '[ci-image] %s\n' "$*" >&2; }

step() {
  local name="$1"
  shift
  local started=$SECONDS
  log "step $name: $*"
  if ! "$@"; then
    log "step $name FAILED after $((SECONDS - started))s"
    return 1
  fi
  log "step $name ok in $((SECONDS - started))s"
}

if [ "$(id -u)" != 0 ]; then
  log "must run as root (debootstrap, podman build --isolation chroot, buildah run)"
  exit 1
fi

total=$SECONDS
if [ "$BASE_IMAGE" = localhost/collector-base:bookworm ]; then
  step base env BASE_TAG="$BASE_IMAGE" bash scripts/base-image.sh
else
  log "step base: skipped (BASE_IMAGE=$BASE_IMAGE comes from a registry)"
fi
step build bash scripts/build-image.sh
step smoke bash scripts/smoke-image.sh
log "PASS: $IMAGE built and smoke-tested in $((SECONDS - total))s"
