#!/usr/bin/env python3
"""Installs the packages of an npm package-lock.json (v2/v3) into DEST/node_modules
without npm, so that building the sandbox image needs no npm on the build machine.

Each package is downloaded from the URL the lock resolved, checked against the lock's
integrity hash, and unpacked at the path the lock gives it, which is what `npm ci
--ignore-scripts --omit=dev` does for pure-JavaScript packages: no package script
runs, and nothing is resolved anew. Commands get their `node_modules/.bin` links.

Usage: fetch-npm-lock.py package-lock.json DEST
"""

import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request


REGISTRY = os.environ.get("CHORUS_NPM_REGISTRY", "https://registry.npmjs.org")


def registry_url(path, version):
    name = path.rsplit("node_modules/", 1)[1]
    return f"{REGISTRY}/{name}/-/{name.split('/')[-1]}-{version}.tgz"


def install(lock_path, dest):
    with open(lock_path, encoding="utf-8") as lock_file:
        lock = json.load(lock_file)
    for path, package in sorted(lock.get("packages", {}).items()):
        if not path.startswith("node_modules/") or package.get("dev") or package.get("link"):
            continue
        integrity = package.get("integrity", "")
        if not integrity.startswith("sha512-"):
            sys.exit(f"fetch-npm-lock: {path} has no sha512 integrity")
        # Locks written with `omit-lockfile-registry-resolved` (npm's default here) leave
        # the URL out; npm then derives it from the name and version, as this does.
        url = package.get("resolved") or registry_url(path, package["version"])
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
        digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
        if digest != integrity[len("sha512-"):]:
            sys.exit(f"fetch-npm-lock: {url} does not match the lock's integrity")
        target = os.path.join(dest, path)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive.getmembers():
                # npm tarballs hold one top directory (usually `package/`): strip it.
                parts = member.name.split("/", 1)
                if len(parts) < 2 or not (member.isfile() or member.isdir()):
                    continue
                relative = os.path.normpath(parts[1])
                if relative.startswith("..") or os.path.isabs(relative):
                    sys.exit(f"fetch-npm-lock: {url} has an unsafe path {member.name}")
                member.name = relative
                member.mode = 0o755 if member.isdir() or member.mode & 0o111 else 0o644
                member.uid = member.gid = 0
                member.uname = member.gname = ""
                # Paths are checked above; newer Pythons want the trust said outright.
                trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
                archive.extract(member, target, **trusted)
        link_bins(dest, path, package.get("bin") or {})


def link_bins(dest, path, bins):
    """`node_modules/.bin/NAME` links for a top-level package's commands, as npm makes."""
    if "/node_modules/" in path[len("node_modules/"):]:
        return
    bin_dir = os.path.join(dest, "node_modules", ".bin")
    for command, script in sorted(bins.items()):
        os.makedirs(bin_dir, exist_ok=True)
        link = os.path.join(bin_dir, command)
        if os.path.lexists(link):
            os.remove(link)
        relative = os.path.join("..", path[len("node_modules/"):], os.path.normpath(script))
        os.symlink(relative, link)
        os.chmod(os.path.join(dest, path, os.path.normpath(script)), 0o755)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    install(sys.argv[1], sys.argv[2])
