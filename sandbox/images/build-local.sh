#!/usr/bin/env bash
#! Builds the default local sandbox image (chorus-sandbox:bookworm-2) without any image
#! registry: debootstrap a minimal Debian bookworm with every toolchain Chorus runs
#! (Rust 1.96 with Cargo from bookworm-security, Python with the packages in
#! baked/python.txt, Node 18, GCC, make), `docker import` it as a base, then add the
#! baked dependencies in one `docker build` layer: the crates of baked/crates vendored
#! by the host's cargo, and the npm packages of baked/node's lock fetched and checked
#! against their integrity hashes by fetch-npm-lock.py (no npm needed, no package
#! script run). This is the route for machines that reach Debian's mirror, crates.io
#! and the npm registry but no image registry; real deployments build the Dockerfiles
#! beside this script.
#!
#! Idempotent and cached: exits at once when the image exists and carries the label
#! of the current manifests; the debootstrapped root, the vendored crates and the
#! node_modules are cached under $CHORUS_SANDBOX_CACHE, each keyed by a hash of the
#! files it comes from, so a rebuild after `docker rmi` or a manifest change redoes
#! only what changed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BAKED="$HERE/baked"
IMAGE="${CHORUS_SANDBOX_IMAGE:-chorus-sandbox:bookworm-2}"
CACHE="${CHORUS_SANDBOX_CACHE:-/var/cache/chorus-sandbox}"
MIRROR="${CHORUS_SANDBOX_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${CHORUS_SANDBOX_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

log() { echo "build-local.sh: $*" >&2; }
fail() { log "$*"; exit 1; }
key_of() { cat "$@" | sha256sum | cut -c1-16; }
# Package names: first word of every line that is not a comment.
packages_of() { sed -e 's/#.*//' "$@" | awk 'NF { print $1 }' | tr '\n' ' '; }

# The docker.io engine's API is 1.41; a newer CLI in /usr/local/bin would refuse to talk
# to it, so prefer the client that ships with the engine.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER="$(command -v docker)"

ROOT_KEY="$(key_of "$BAKED/apt.txt" "$BAKED/python.txt")"
CRATES_KEY="$(key_of "$BAKED/crates/Cargo.toml" "$BAKED/crates/Cargo.lock")"
NODE_KEY="$(key_of "$BAKED/node/package.json" "$BAKED/node/package-lock.json" "$HERE/fetch-npm-lock.py")"
IMAGE_KEY="$(echo "$ROOT_KEY $CRATES_KEY $NODE_KEY" | key_of "$BAKED/cargo-config.toml" "$0" "$HERE/fetch-npm-lock.py" -)"

if [ "$("$DOCKER" image inspect --format '{{ index .Config.Labels "org.chorus.sandbox.baked" }}' "$IMAGE" 2>/dev/null)" = "$IMAGE_KEY" ]; then
    exit 0
fi
mkdir -p "$CACHE"
START=$(date +%s)

# 1. The Debian root: minbase, then apt inside it so that bookworm-security (a second
# mirror, which debootstrap cannot mix in) provides rustc-web and cargo-web.
TARBALL="$CACHE/rootfs-bookworm-2-$ROOT_KEY.tar"
BASE="chorus-sandbox-base:$ROOT_KEY"
if [ ! -s "$TARBALL" ]; then
    command -v debootstrap >/dev/null || fail "debootstrap is not installed"
    ROOT="$(mktemp -d "$CACHE/root.XXXXXX")"
    trap 'umount "$ROOT/proc" 2>/dev/null || true; rm -rf "$ROOT"' EXIT
    log "debootstrapping bookworm and installing $(packages_of "$BAKED/apt.txt" "$BAKED/python.txt")(takes several minutes once)"
    debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
        fail "debootstrap failed, see $CACHE/debootstrap.log"
    echo "deb $SECURITY_MIRROR bookworm-security main" >"$ROOT/etc/apt/sources.list.d/security.list"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    mount -t proc proc "$ROOT/proc"
    # shellcheck disable=SC2046 # one word per package is the point
    if ! { chroot "$ROOT" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive chroot "$ROOT" apt-get install -y -qq --no-install-recommends \
            $(packages_of "$BAKED/apt.txt" "$BAKED/python.txt"); } >"$CACHE/apt-image.log" 2>&1; then
        fail "apt-get inside the image root failed, see $CACHE/apt-image.log"
    fi
    umount "$ROOT/proc"
    # Drop what only grows the image: apt lists and package caches.
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT/etc/resolv.conf"
    # Write to a temporary name first so an interrupted run never leaves a bad cache.
    tar --numeric-owner -C "$ROOT" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
    rm -rf "$ROOT"
    trap - EXIT
fi
if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
    "$DOCKER" import "$TARBALL" "$BASE" >/dev/null
fi

# 2. The vendored crates, fetched by the host's cargo (the sandbox has no network).
CRATES="$CACHE/crates-$CRATES_KEY"
if [ ! -d "$CRATES/vendor" ]; then
    command -v cargo >/dev/null || fail "cargo is needed on the build machine to vendor baked/crates"
    rm -rf "$CRATES.part" && mkdir -p "$CRATES.part"
    log "vendoring the baked crates"
    # A copy, so that cargo's target/ and lock handling never touch the repository.
    cp -r "$BAKED/crates" "$CRATES.part/manifest"
    cargo vendor --locked --versioned-dirs --manifest-path "$CRATES.part/manifest/Cargo.toml" \
        "$CRATES.part/vendor" >"$CACHE/vendor.log" 2>&1 || fail "cargo vendor failed, see $CACHE/vendor.log"
    rm -rf "$CRATES.part/manifest"
    mv "$CRATES.part" "$CRATES"
fi

# 3. The npm packages of the lock, as `npm ci --ignore-scripts --omit=dev` would install
# them, without npm (one less tool on the build machine, and the same tree everywhere).
NODE="$CACHE/node-$NODE_KEY"
if [ ! -d "$NODE/node_modules" ]; then
    command -v python3 >/dev/null || fail "python3 is needed on the build machine to fetch baked/node"
    rm -rf "$NODE.part" && mkdir -p "$NODE.part"
    log "fetching the baked npm packages"
    python3 "$HERE/fetch-npm-lock.py" "$BAKED/node/package-lock.json" "$NODE.part" >"$CACHE/npm.log" 2>&1 ||
        fail "fetching the npm packages failed, see $CACHE/npm.log"
    mv "$NODE.part" "$NODE"
fi

# 4. One layer on the base: /opt/chorus and the environment that points at it.
CONTEXT="$(mktemp -d "$CACHE/context.XXXXXX")"
trap 'rm -rf "$CONTEXT"' EXIT
mkdir -p "$CONTEXT/opt/cargo" "$CONTEXT/opt/node" "$CONTEXT/cache"
cp -al "$CRATES/vendor" "$CONTEXT/opt/cargo/vendor"
cp -al "$NODE/node_modules" "$CONTEXT/opt/node/node_modules"
cp "$BAKED/cargo-config.toml" "$CONTEXT/cargo-config.toml"
log "building $IMAGE"
PREVIOUS="$("$DOCKER" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
"$DOCKER" build -q -t "$IMAGE" -f - "$CONTEXT" >/dev/null <<DOCKERFILE || fail "docker build of $IMAGE failed"
FROM $BASE
COPY opt /opt/chorus
COPY cargo-config.toml /.cargo/config.toml
# The mount point of the per-session build cache: Docker gives a new volume the owner
# of the directory it is mounted on, so the unprivileged user can write to it.
COPY --chown=65534:65534 cache /cache
ENV PATH=/opt/chorus/node/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    CARGO_HOME=/tmp/cargo-home \
    NODE_PATH=/opt/chorus/node/node_modules \
    PYTHONDONTWRITEBYTECODE=1
LABEL org.chorus.sandbox.baked=$IMAGE_KEY
WORKDIR /work
DOCKERFILE
# The image this one replaces would linger untagged; a container still using it keeps it.
if [ -n "$PREVIOUS" ] && [ "$PREVIOUS" != "$("$DOCKER" image inspect --format '{{.Id}}' "$IMAGE")" ]; then
    "$DOCKER" rmi "$PREVIOUS" >/dev/null 2>&1 || true
fi
log "built $IMAGE in $(($(date +%s) - START)) s"
