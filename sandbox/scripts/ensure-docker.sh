#!/usr/bin/env bash
#! Makes sure a Docker engine answers and the sandbox image exists, so that the
#! chorus-sandbox tests (and a local hub) can run code. Installs docker.io and
#! debootstrap when missing, starts dockerd in the background when no engine
#! answers, waits for it, then builds the local image (chorus-sandbox:bookworm-2,
#! see sandbox/images/README.md). Idempotent and quiet;
#! exits non-zero with a message saying what failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_DIR="${CHORUS_SANDBOX_CACHE:-/var/cache/chorus-sandbox}"
mkdir -p "$LOG_DIR"

fail() { echo "ensure-docker.sh: $*" >&2; exit 1; }

# The engine's own client (API 1.41); a newer CLI elsewhere on PATH would refuse it.
docker_cli() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi; }
engine_up() { docker_cli version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# python3 fetches the image's npm packages (images/fetch-npm-lock.py); cargo, which
# vendors its crates, is there already for anyone building Chorus.
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || [ ! -x /usr/bin/docker ] ||
    ! command -v python3 >/dev/null; then
    [ "$(id -u)" = 0 ] || fail "docker.io, debootstrap or python3 are missing and we are not root to install them"
    {
        apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap python3
    } >"$LOG_DIR/apt.log" 2>&1 || fail "apt-get install docker.io debootstrap python3 failed, see $LOG_DIR/apt.log"
fi

if ! engine_up; then
    # No systemd here: run the daemon ourselves, detached so it outlives this script.
    # Only the default engine counts: a second one (ensure-second-docker.sh)
    # is another dockerd with its own pid file.
    default_running() {
        [ -S /var/run/docker.sock ] && [ -f /var/run/docker.pid ] &&
            kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null
    }
    if ! default_running; then
        nohup dockerd >"$LOG_DIR/dockerd.log" 2>&1 &
    fi
    for _ in $(seq 1 60); do
        engine_up && break
        sleep 0.5
    done
    engine_up || fail "dockerd did not answer within 30 s, see $LOG_DIR/dockerd.log"
fi

"$HERE/../images/build-local.sh" || fail "building the local sandbox image failed"
