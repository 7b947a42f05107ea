# Sourced: the release's names and version, from hack/release/project.env and Cargo.toml.
#   OWNER REPO VERSION IMAGE SOURCE_URL REVISION CREATED SOURCE_DATE_EPOCH
_release_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=project.env
. "$_release_root/hack/release/project.env"
# Portable sed (BSD and GNU): the [workspace.package] table, then its version line.
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/p' "$_release_root/Cargo.toml" | sed -n 's/^version *= *"\(.*\)"/\1/p' | head -n 1)"
IMAGE="ghcr.io/$OWNER/$REPO"
SOURCE_URL="https://github.com/$OWNER/$REPO"
REVISION="$(git -C "$_release_root" rev-parse HEAD 2>/dev/null || echo unknown)"
# Build time is the commit's time, so that one commit builds one image digest.
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$_release_root" log -1 --format=%ct 2>/dev/null || echo 0)}"
CREATED="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
export OWNER REPO VERSION IMAGE SOURCE_URL REVISION SOURCE_DATE_EPOCH CREATED
