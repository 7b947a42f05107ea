#!/usr/bin/env bash
# Packs one kubectl-aviary binary as the release asset OUTDIR/kubectl-aviary_<version>_<os>_<arch>.tar.gz
# (the binary and a README at the archive's root, as the krew manifest expects). The archive is
# reproducible: entries sorted, owned by 0:0, times set to SOURCE_DATE_EPOCH, gzip without a time.
# Prints the archive's path.
#
# Usage: hack/release/package-plugin.sh BIN OS ARCH OUTDIR      OS: linux|darwin  ARCH: amd64|arm64
# Runs on the macOS release runners too (bash 3.2, BSD tools, python3), where hack/release/vars.sh
# (GNU date) cannot be sourced: there VERSION and SOURCE_DATE_EPOCH come from the environment.
set -euo pipefail
bin="${1:?usage: package-plugin.sh BIN OS ARCH OUTDIR}"
os="${2:?usage: package-plugin.sh BIN OS ARCH OUTDIR}"
arch="${3:?usage: package-plugin.sh BIN OS ARCH OUTDIR}"
outdir="${4:?usage: package-plugin.sh BIN OS ARCH OUTDIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "$os" in linux|darwin) ;; *) echo "package-plugin: OS must be linux or darwin, not $os" >&2; exit 2 ;; esac
case "$arch" in amd64|arm64) ;; *) echo "package-plugin: ARCH must be amd64 or arm64, not $arch" >&2; exit 2 ;; esac
if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then echo "package-plugin: $bin is not an executable file" >&2; exit 1; fi
if [ -z "${VERSION:-}" ]; then
  # shellcheck source=hack/release/vars.sh
  . "$here/vars.sh"
fi
# shellcheck source=hack/release/project.env
. "$here/project.env"
epoch="${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)}"

mkdir -p "$outdir"
archive="$(cd "$outdir" && pwd)/kubectl-aviary_${VERSION}_${os}_${arch}.tar.gz"
readme="kubectl-aviary $VERSION ($os/$arch): the kubectl plugin of Aviary, progressive delivery
for Kubernetes.

Install: put kubectl-aviary on your PATH, then run \`kubectl aviary --help\`. With krew:
\`kubectl krew install --manifest-url https://github.com/$OWNER/$REPO/releases/download/v$VERSION/aviary.yaml\`.

Source, documentation and license (Apache-2.0): https://github.com/$OWNER/$REPO
"
python3 - "$archive" "$bin" "$epoch" "$readme" <<'PY'
import gzip, io, sys, tarfile
archive, binary, epoch, readme = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
def entry(name, mode, size):
    info = tarfile.TarInfo(name)
    info.mode, info.size, info.mtime = mode, size, epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
with open(binary, "rb") as f:
    data = f.read()
with open(archive, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz, \
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
    tar.addfile(entry("README.md", 0o644, len(readme)), io.BytesIO(readme))
    tar.addfile(entry("kubectl-aviary", 0o755, len(data)), io.BytesIO(data))
PY
echo "$archive"
