#!/usr/bin/env bash
# podman as it runs on this project's machines (tests/image.rs): runc, with the containers.conf
# beside this script (no rlimits or pids limit requested: the sandbox refuses both; crun fails
# on its cgroups). Installs podman and runc from Debian's packages when missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  echo "podman.sh: installing podman and runc" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends podman runc uidmap >/dev/null
fi
export CONTAINERS_CONF="$here/containers.conf"
exec podman "$@"
