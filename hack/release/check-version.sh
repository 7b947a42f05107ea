#!/usr/bin/env bash
# The release's one version, checked before anything is built: the tag must be v$VERSION
# (Cargo.toml's [workspace.package] version) and the chart's version and appVersion must equal
# it. On GitHub (GITHUB_REPOSITORY set) the repository must also be the one project.env names,
# since the image and chart are pushed under that owner.
# Usage: hack/release/check-version.sh TAG    (TAG: v1.2.3 or refs/tags/v1.2.3)
set -euo pipefail
tag="${1:?usage: check-version.sh TAG}"
tag="${tag#refs/tags/}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=hack/release/vars.sh
. "$root/hack/release/vars.sh"
chart="$root/charts/aviary/Chart.yaml"
field() { sed -n "s/^$1:[[:space:]]*[\"']\{0,1\}\([^\"'[:space:]]*\)[\"']\{0,1\}[[:space:]]*\$/\1/p" "$chart"; }

errors=0
bad() { echo "check-version: $*" >&2; errors=$((errors + 1)); }
[ -n "$VERSION" ] || bad "no version in Cargo.toml's [workspace.package]"
[ "$tag" = "v$VERSION" ] || bad "tag $tag is not v$VERSION (Cargo.toml [workspace.package] version)"
[ "$(field version)" = "$VERSION" ] || bad "charts/aviary/Chart.yaml version is '$(field version)', not $VERSION"
[ "$(field appVersion)" = "$VERSION" ] || bad "charts/aviary/Chart.yaml appVersion is '$(field appVersion)', not $VERSION"
if [ -n "${GITHUB_REPOSITORY:-}" ]; then
  # GitHub names are case-insensitive; ghcr.io wants them lower-case, as project.env spells them.
  gh_repo="$(printf '%s' "$GITHUB_REPOSITORY" | tr '[:upper:]' '[:lower:]')"
  [ "$gh_repo" = "$OWNER/$REPO" ] || bad "running in $GITHUB_REPOSITORY, but hack/release/project.env names $OWNER/$REPO"
fi
[ "$errors" -eq 0 ] || exit 1
echo "check-version: $tag = v$VERSION = chart version = chart appVersion ($OWNER/$REPO)"
