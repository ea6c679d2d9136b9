#!/usr/bin/env bash
#! Makes sure a Docker engine answers and the sandbox image exists, so that the
#! chorus-sandbox tests (and a local hub) can run code. Installs docker.io and
#! debootstrap when missing, starts dockerd in the background when no engine
#! answers, waits for it, then builds the local image. Idempotent and quiet;
#! exits non-zero with a message saying what failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_DIR="${CHORUS_SANDBOX_CACHE:-/var/cache/chorus-sandbox}"
mkdir -p "$LOG_DIR"

fail() { echo "ensure-docker.sh: $*" >&2; exit 1; }

# The engine's own client (API 1.41); a newer CLI elsewhere on PATH would refuse it.
docker_cli() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi; }
engine_up() { docker_cli version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || [ ! -x /usr/bin/docker ]; then
    [ "$(id -u)" = 0 ] || fail "docker.io and debootstrap are missing and we are not root to install them"
    {
        apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap
    } >"$LOG_DIR/apt.log" 2>&1 || fail "apt-get install docker.io debootstrap failed, see $LOG_DIR/apt.log"
fi

if ! engine_up; then
    # No systemd here: run the daemon ourselves, detached so it outlives this script.
    if [ ! -S /var/run/docker.sock ] || ! pgrep -x dockerd >/dev/null; then
        nohup dockerd >"$LOG_DIR/dockerd.log" 2>&1 &
    fi
    for _ in $(seq 1 60); do
        engine_up && break
        sleep 0.5
    done
    engine_up || fail "dockerd did not answer within 30 s, see $LOG_DIR/dockerd.log"
fi

"$HERE/../images/build-local.sh" || fail "building the local sandbox image failed"
