#!/usr/bin/env python3
"""Writes the krew plugin manifest of a release, DIR/aviary.yaml, from the plugin archives in DIR
and DIR/checksums.txt (hack/release/checksums.sh).

Every platform (linux and darwin, amd64 and arm64) must have its archive,
kubectl-aviary_<version>_<os>_<arch>.tar.gz, listed in checksums.txt with the archive's actual
SHA-256 and holding the kubectl-aviary binary; each platform's uri is that archive as a GitHub
release asset of v<version>. Names and version come from the environment (OWNER, REPO, VERSION:
hack/release/vars.sh). Standard library only: the manifest is written as YAML whose strings are
JSON-quoted.

Usage: OWNER=… REPO=… VERSION=… hack/release/krew-manifest.py DIR [OUT]
"""
import hashlib
import json
import os
import sys
import tarfile

PLATFORMS = [("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64")]
BIN = "kubectl-aviary"


def fail(msg):
    sys.exit(f"krew-manifest: {msg}")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    if len(sys.argv) not in (2, 3):
        fail("usage: krew-manifest.py DIR [OUT]")
    d = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.join(d, "aviary.yaml")
    try:
        owner, repo, version = (os.environ[k] for k in ("OWNER", "REPO", "VERSION"))
    except KeyError as e:
        fail(f"{e.args[0]} is not set (source hack/release/vars.sh)")
    sums = {}
    with open(os.path.join(d, "checksums.txt")) as f:
        for line in f:
            digest, _, name = line.rstrip("\n").partition("  ")
            sums[name.lstrip("*")] = digest
    base = f"https://github.com/{owner}/{repo}/releases/download/v{version}"
    q = json.dumps
    lines = [
        "apiVersion: krew.googlecontainertools.github.com/v1alpha2",
        "kind: Plugin",
        "metadata:",
        "  name: aviary",
        "spec:",
        f"  version: {q('v' + version)}",
        f"  homepage: {q(f'https://github.com/{owner}/{repo}')}",
        "  shortDescription: Inspect and steer Aviary canary and blue-green Rollouts",
        "  description: |",
        "    The kubectl plugin of Aviary, a progressive-delivery operator: get, watch, promote,",
        "    abort, retry and undo canary and blue-green Rollouts, and lint or convert Argo Rollouts",
        "    manifests. Its commands and flags follow `kubectl argo rollouts`.",
        "  platforms:",
    ]
    for os_, arch in PLATFORMS:
        name = f"{BIN}_{version}_{os_}_{arch}.tar.gz"
        path = os.path.join(d, name)
        if not os.path.isfile(path):
            fail(f"{name} is missing from {d}")
        if name not in sums:
            fail(f"{name} is not listed in checksums.txt")
        actual = sha256(path)
        if sums[name] != actual:
            fail(f"{name}: checksums.txt says {sums[name]}, the archive is {actual}")
        with tarfile.open(path) as tar:
            member = next((m for m in tar.getmembers() if m.name == BIN), None)
        if member is None or not member.isfile() or not member.mode & 0o111:
            fail(f"{name} has no executable {BIN} at its root")
        lines += [
            "  - selector:",
            "      matchLabels:",
            f"        os: {os_}",
            f"        arch: {arch}",
            f"    uri: {q(f'{base}/{name}')}",
            f"    sha256: {q(actual)}",
            f"    bin: {BIN}",
            "    files:",
            f"    - from: {BIN}",
            "      to: .",
            "    - from: README.md",
            "      to: .",
        ]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(out)


if __name__ == "__main__":
    main()
