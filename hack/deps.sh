#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine: Go and Rust must already
# be there (they are on this project's machines); everything else is checked and installed here.
set -euo pipefail
need_apt=()
for cmd in curl openssl python3 prometheus tmux; do command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$cmd"); done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
command -v go >/dev/null 2>&1 || { echo "Go is required (https://go.dev/doc/install); not found on PATH" >&2; exit 1; }
command -v cargo >/dev/null 2>&1 || { echo "Rust (cargo) is required; not found on PATH" >&2; exit 1; }
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
