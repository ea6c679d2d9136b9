#!/usr/bin/env bash
# Runs every Chorus check and test on a fresh Debian machine, installing
# what they need first. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

log "format"
cargo fmt --all --check

log "lint"
cargo clippy --workspace --all-targets -- -D warnings

log "docker engine and sandbox image (installs docker.io and debootstrap if missing)"
sandbox/scripts/ensure-docker.sh

log "tests"
cargo test --workspace --all-targets
