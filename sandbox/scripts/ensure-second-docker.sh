#!/usr/bin/env bash
#! Makes sure a second Docker engine runs on this machine beside the first, with
#! the sandbox image, for the engine-pool tests (sandbox/tests/pool.rs) and for
#! trying `chorus hub --docker-engine` locally. It has its own data root, exec
#! root, pid file, containerd and cgroup parent, and no networking of its own
#! (`--bridge none`, no iptables): sandbox containers have no network anyway,
#! and this way it never touches the first engine's bridge or rules.
#!
#! It answers on unix:///run/chorus-docker2.sock and, with mutual TLS, on
#! tcp://127.0.0.1:23762 (certificates made here, client ones in
#! /var/lib/chorus-docker2-tls: ca.pem, cert.pem, key.pem). The image is copied
#! from the first engine (`docker save | docker load`, about a minute for
#! 1.3 GB), only when that engine's image differs. Needs the first engine and
#! its image (sandbox/scripts/ensure-docker.sh). Idempotent and quiet; prints
#! the socket path; exits non-zero with a message saying what failed. Runs that
#! overlap (CI starts it in the background, a test may start it too) take turns.
set -euo pipefail

SOCKET=/run/chorus-docker2.sock
DATA_ROOT=/var/lib/chorus-docker2
EXEC_ROOT=/run/chorus-docker2
PIDFILE=/run/chorus-docker2.pid
TLS_DIR=/var/lib/chorus-docker2-tls
TLS_ADDR=127.0.0.1:23762
IMAGE="${CHORUS_SANDBOX_IMAGE:-chorus-sandbox:bookworm-2}"
LOG_DIR="${CHORUS_SANDBOX_CACHE:-/var/cache/chorus-sandbox}"
mkdir -p "$LOG_DIR" "$TLS_DIR"

fail() { echo "ensure-second-docker.sh: $*" >&2; exit 1; }

# The engine's own client (API 1.41); a newer CLI elsewhere on PATH would refuse it.
docker_cli() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi; }
second() { docker_cli -H "unix://$SOCKET" "$@"; }
engine_up() { second version --format '{{.Server.Version}}' >/dev/null 2>&1; }

command -v openssl >/dev/null || fail "openssl is missing (apt-get install openssl): it makes the TLS certificates"

exec 9>"$LOG_DIR/docker2.lock"
flock 9

docker_cli version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
    fail "the first Docker engine does not answer; run sandbox/scripts/ensure-docker.sh"
FIRST_ID="$(docker_cli image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null)" ||
    fail "the first engine has no $IMAGE; run sandbox/scripts/ensure-docker.sh"

# A throwaway CA, the engine's certificate for 127.0.0.1 and a client's, made once.
if [ ! -s "$TLS_DIR/key.pem" ]; then
    (
        cd "$TLS_DIR"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=chorus-docker2-ca \
            -keyout ca-key.pem -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server-key.pem -out server.csr
        printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
            -extfile server.ext -out server-cert.pem
        openssl req -newkey rsa:2048 -nodes -subj /CN=chorus-hub -keyout key.tmp -out client.csr
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
            -extfile client.ext -out cert.pem
        # Last, so a half-made set is made again next time.
        mv key.tmp key.pem
    ) >"$LOG_DIR/docker2-tls.log" 2>&1 || fail "making the TLS certificates failed, see $LOG_DIR/docker2-tls.log"
fi

# Whether the pid in this file is a live process whose command line holds the text. A
# daemon killed with SIGKILL leaves its pid file, and its containerd's (which dies
# with it): dockerd refuses to start while its pid lives, and waits 50 s for a
# containerd whose pid lives, yet by now either pid may be a zombie not reaped yet
# (its command line is empty) or any other process's.
alive_as() {
    local pid
    pid="$(cat "$1" 2>/dev/null)" && [ -n "$pid" ] &&
        tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$2"
}

if ! engine_up && ! alive_as "$PIDFILE" "--pidfile $PIDFILE"; then
    rm -f "$PIDFILE"
    alive_as "$EXEC_ROOT/containerd/containerd.pid" "$EXEC_ROOT/containerd/" ||
        rm -f "$EXEC_ROOT/containerd/containerd.pid"
    # Detached from this script and its caller: no inherited output pipe (a test
    # reading ours would wait for the daemon to exit) and not the lock's descriptor.
    setsid nohup dockerd \
        --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" --pidfile "$PIDFILE" \
        -H "unix://$SOCKET" -H "tcp://$TLS_ADDR" \
        --tlsverify --tlscacert "$TLS_DIR/ca.pem" \
        --tlscert "$TLS_DIR/server-cert.pem" --tlskey "$TLS_DIR/server-key.pem" \
        --bridge none --iptables=false --ip-masq=false --cgroup-parent chorus-docker2 \
        </dev/null >>"$LOG_DIR/dockerd2.log" 2>&1 9>&- &
fi
# Ours may also be starting already. Restoring after a crash stops what was running,
# giving each container 10 s to take a SIGTERM.
for _ in $(seq 1 120); do
    engine_up && break
    sleep 0.5
done
engine_up || fail "the second dockerd did not answer within 60 s, see $LOG_DIR/dockerd2.log"

if [ "$(second image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null)" != "$FIRST_ID" ]; then
    docker_cli save "$IMAGE" | second load -q >"$LOG_DIR/docker2-load.log" 2>&1 ||
        fail "copying $IMAGE into the second engine failed, see $LOG_DIR/docker2-load.log"
    # The previous copy, if any, is now untagged: it only takes disk.
    second image prune -f >/dev/null 2>&1 || true
fi

echo "$SOCKET"
