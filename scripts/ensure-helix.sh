#!/usr/bin/env bash
# Prints the path of a Helix 25.07.1 `hx` for the real-Helix end-to-end tests,
# building it once from the vendored source and caching it outside the
# repository (about 7 minutes on 2 cores; later runs reuse the binary).
# Helix publishes nothing this machine's registries serve, so the source
# tarball in ../shared/vendor is the only way in (see its README).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
version=25.07.1
cache="${XDG_CACHE_HOME:-$HOME/.cache}/chorus-tools/helix-$version"
hx="$cache/bin/hx"

if [ -x "$hx" ]; then
  echo "$hx"
  exit 0
fi

tarball="${CHORUS_HELIX_TARBALL:-}"
if [ -z "$tarball" ]; then
  for dir in "$repo/../shared/vendor" "$(dirname "$repo")/shared/vendor" /work/shared/vendor; do
    if [ -f "$dir/helix-$version.tar.gz" ]; then
      tarball="$dir/helix-$version.tar.gz"
      break
    fi
  done
fi
if [ -z "$tarball" ] || ! [ -f "$tarball" ]; then
  echo "helix-$version.tar.gz not found in ../shared/vendor; set CHORUS_HELIX_TARBALL" >&2
  exit 1
fi

command -v tmux >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q tmux >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q tmux >/dev/null; }
}

mkdir -p "$cache"
src="$cache/src"
rm -rf "$src"
mkdir -p "$src"
tar -xzf "$tarball" -C "$src"
echo "building Helix $version from $tarball (about 7 minutes, once)" >&2
if ! (
  cd "$src/helix-$version"
  # Grammars would be fetched from the network; LSP does not need them.
  HELIX_DISABLE_AUTO_GRAMMAR_BUILD=1 CARGO_TARGET_DIR="$cache/target" \
    cargo build --release --locked -p helix-term
) >"$cache/build.log" 2>&1; then
  tail -n 40 "$cache/build.log" >&2
  exit 1
fi
mkdir -p "$cache/bin"
cp "$cache/target/release/hx" "$hx.tmp"
mv "$hx.tmp" "$hx"
rm -rf "$cache/runtime" && cp -r "$src/helix-$version/runtime" "$cache/runtime"
# The build tree is 1–2 GB; only the binary and its runtime are kept.
rm -rf "$cache/target" "$src"
echo "$hx"
