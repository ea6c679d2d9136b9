#!/usr/bin/env bash
#! Builds the default local sandbox image (chorus-sandbox:bookworm) without any image
#! registry: debootstrap a minimal Debian bookworm with every toolchain Chorus runs,
#! then `docker import` it. This is the route for machines that reach Debian's mirror
#! but no image registry; real deployments build the Dockerfiles beside this script.
#!
#! Idempotent: exits at once when the image exists; the debootstrapped root is cached
#! as a tarball under $CHORUS_SANDBOX_CACHE so a rerun after `docker rmi` only imports.
set -euo pipefail

IMAGE="${CHORUS_SANDBOX_IMAGE:-chorus-sandbox:bookworm}"
CACHE="${CHORUS_SANDBOX_CACHE:-/var/cache/chorus-sandbox}"
MIRROR="${CHORUS_SANDBOX_MIRROR:-http://deb.debian.org/debian}"
# Everything the default languages need: python3, node, a C toolchain and rustc.
# gcc is also rustc's linker.
PACKAGES="python3,nodejs,gcc,libc6-dev,rustc"
TARBALL="$CACHE/rootfs-bookworm.tar"

# The docker.io engine's API is 1.41; a newer CLI in /usr/local/bin would refuse to talk
# to it, so prefer the client that ships with the engine.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER="$(command -v docker)"

if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi

mkdir -p "$CACHE"
if [ ! -s "$TARBALL" ]; then
    command -v debootstrap >/dev/null || { echo "build-local.sh: debootstrap is not installed" >&2; exit 1; }
    ROOT="$(mktemp -d "$CACHE/root.XXXXXX")"
    trap 'rm -rf "$ROOT"' EXIT
    echo "build-local.sh: debootstrapping $PACKAGES (takes a few minutes once)" >&2
    if ! debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOT" "$MIRROR" \
        >"$CACHE/debootstrap.log" 2>&1; then
        echo "build-local.sh: debootstrap failed, see $CACHE/debootstrap.log" >&2
        exit 1
    fi
    # Drop what only grows the image: apt lists and package caches.
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
    # Write to a temporary name first so an interrupted run never leaves a bad cache.
    tar --numeric-owner -C "$ROOT" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
fi

"$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'WORKDIR /work' \
    "$TARBALL" "$IMAGE" >/dev/null
echo "build-local.sh: imported $IMAGE" >&2
