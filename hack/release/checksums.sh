#!/usr/bin/env bash
# Writes DIR/checksums.txt: the SHA-256 of every file in DIR (but itself), sorted by name, in
# the `sha256sum -c` format (`<hex>  <name>`), so users check a download with
# `sha256sum --ignore-missing -c checksums.txt` (or `shasum -a 256 -c`). Prints the file.
# Usage: hack/release/checksums.sh DIR
set -euo pipefail
dir="${1:?usage: checksums.sh DIR}"
cd "$dir"
if command -v sha256sum >/dev/null 2>&1; then sum() { sha256sum "$@"; }; else sum() { shasum -a 256 "$@"; }; fi
files=()
while IFS= read -r f; do files+=("$f"); done < <(find . -maxdepth 1 -type f ! -name 'checksums.txt*' ! -name '.*' | sed 's#^\./##' | LC_ALL=C sort)
[ ${#files[@]} -gt 0 ] || { echo "checksums: no files in $dir" >&2; exit 1; }
sum "${files[@]}" > checksums.txt.tmp
mv checksums.txt.tmp checksums.txt
cat checksums.txt
