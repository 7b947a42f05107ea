#!/usr/bin/env bash
# Prints the release's names and version (hack/release/vars.sh) as NAME=value lines, for a
# workflow step to append to $GITHUB_ENV and $GITHUB_OUTPUT, so no workflow spells them itself.
set -euo pipefail
# shellcheck source=hack/release/vars.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vars.sh"
for name in OWNER REPO VERSION IMAGE SOURCE_URL REVISION SOURCE_DATE_EPOCH CREATED; do
  value="${!name}"
  case "$value" in *$'\n'*|'') echo "github-env: $name is empty or multi-line" >&2; exit 1 ;; esac
  printf '%s=%s\n' "$name" "$value"
done
