#!/usr/bin/env bash
# Smoke-test the built image without a container engine daemon: `podman run` cannot start
# containers in this kind of sandbox (crun cannot set RLIMIT_NOFILE), so the image's entrypoint
# is started with `buildah run --isolation chroot --network host` instead.
#
# What it checks: the agent in the image starts with a mounted config, /-/ready turns 200, and it
# scrapes a target on loopback (a tiny python http.server on the host serving a metrics body):
# GET /api/v1/targets shows that target with health "up". Every wait is bounded.
#
# Usage: scripts/smoke-image.sh          (root; installs buildah when missing)
# Env:   IMAGE           image to test              (default localhost/collector:dev)
#        AGENT_PORT      agent listen port          (default 19099)
#        TARGET_PORT     fake exporter port         (default 19100)
#        READY_TIMEOUT   seconds to wait for ready  (default 60)
#        UP_TIMEOUT      seconds to wait for "up"   (default 60)
set -euo pipefail

IMAGE="${IMAGE:-localhost/collector:dev}"
AGENT_PORT="${AGENT_PORT:-19099}"
TARGET_PORT="${TARGET_PORT:-19100}"
READY_TIMEOUT="${READY_TIMEOUT:-60}"
UP_TIMEOUT="${UP_TIMEOUT:-60}"
PYTHON="${PYTHON:-python3}"

log() { printf '[smoke-image] %s\n' "$*" >&2; }

if ! command -v buildah >/dev/null 2>&1; then
  log "installing buildah"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah
fi

work="$(mktemp -d /tmp/collector-smoke.XXXXXX)"
ctr=""
agent_pid=""
target_pid=""

cleanup() {
  local rc=$?
  # Stop what this script started, by process id (each was started in its own session, so
  # its id is also its process group's id and takes the children with it).
  for pid in "$agent_pid" "$target_pid"; do
    [ -n "$pid" ] || continue
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$agent_pid" "$target_pid"; do
    [ -n "$pid" ] || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  if [ -n "$ctr" ]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi
  if [ "$rc" != 0 ] && [ -s "$work/agent.log" ]; then
    log "agent output (last 40 lines):"
    tail -n 40 "$work/agent.log" >&2
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------- fake exporter on loopback
cat >"$work/exporter.py" <<'PY'
import http.server
import sys

BODY = (
    b"# HELP smoke_up A constant gauge for the image smoke test.\n"
    b"# TYPE smoke_up gauge\n"
    b'smoke_up{source="smoke-image"} 1\n'
)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
setsid "$PYTHON" "$work/exporter.py" "$TARGET_PORT" >"$work/exporter.log" 2>&1 &
target_pid=$!

# ---------------------------------------------------------------- agent config
mkdir -p "$work/etc"
cat >"$work/etc/collector.yml" <<YAML
global:
  scrape_interval: 2s
  scrape_timeout: 1s
scrape_configs:
  - job_name: smoke
    static_configs:
      - targets: ["127.0.0.1:${TARGET_PORT}"]
YAML
chmod -R a+rX "$work"

# ---------------------------------------------------------------- agent from the image
ctr="$(buildah from --pull-never "$IMAGE")"
log "starting $IMAGE (container $ctr) on 127.0.0.1:$AGENT_PORT"
setsid buildah run --isolation chroot --network host \
  --volume "$work/etc:/etc/collector:ro" \
  "$ctr" -- \
  collector \
  --config.file=/etc/collector/collector.yml \
  --storage.path=/var/lib/collector \
  --web.listen-address="127.0.0.1:$AGENT_PORT" \
  >"$work/agent.log" 2>&1 &
agent_pid=$!

# ---------------------------------------------------------------- checks (bounded)
"$PYTHON" - "$AGENT_PORT" "$TARGET_PORT" "$READY_TIMEOUT" "$UP_TIMEOUT" "$agent_pid" <<'PY'
import json
import os
import sys
import time
import urllib.error
import urllib.request

agent_port, target_port = sys.argv[1], sys.argv[2]
ready_timeout, up_timeout = float(sys.argv[3]), float(sys.argv[4])
agent_pid = int(sys.argv[5])
base = f"http://127.0.0.1:{agent_port}"


def alive() -> bool:
    try:
        os.kill(agent_pid, 0)
    except ProcessLookupError:
        return False
    return True


def get(path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(base + path, timeout=2) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait(what: str, timeout: float, check) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            sys.exit(f"FAIL: the agent exited while waiting for {what}")
        try:
            ok, last = check()
        except OSError as err:
            ok, last = False, repr(err)
        if ok:
            print(f"ok: {what}")
            return
        time.sleep(0.5)
    sys.exit(f"FAIL: {what} not seen within {timeout:g}s (last: {last})")


def ready() -> tuple[bool, str]:
    status, _ = get("/-/ready")
    return status == 200, f"HTTP {status}"


def healthy() -> tuple[bool, str]:
    status, _ = get("/-/healthy")
    return status == 200, f"HTTP {status}"


def target_up() -> tuple[bool, str]:
    status, body = get("/api/v1/targets")
    if status != 200:
        return False, f"HTTP {status}"
    active = json.loads(body)["data"]["activeTargets"]
    mine = [t for t in active if f"127.0.0.1:{target_port}" in t.get("scrapeUrl", "")]
    if not mine:
        return False, f"target not listed among {len(active)} active targets"
    return mine[0].get("health") == "up", json.dumps(mine[0])


def self_metrics() -> tuple[bool, str]:
    status, body = get("/metrics")
    return status == 200 and b"# TYPE" in body, f"HTTP {status}"


wait("/-/healthy", ready_timeout, healthy)
wait("/-/ready", ready_timeout, ready)
wait("/metrics", 10, self_metrics)
wait(f'target 127.0.0.1:{target_port} health "up" in /api/v1/targets', up_timeout, target_up)
PY

log "PASS"
