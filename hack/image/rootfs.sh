#!/usr/bin/env bash
# Assembles the controller image's root filesystem in OUT from the built binary in BIN_DIR and
# three Debian packages (libc6, libgcc-s1, ca-certificates): the shared libraries and the loader,
# the CA bundle, a passwd/group naming uid/gid 65532 (nonroot), the packages' copyright files and
# dpkg status entries (so SBOM and vulnerability scanners see them), and os-release. No shell, no
# package manager. The Dockerfile's build stage and `make image` (hack/image/build.sh) both run
# this script, so both images have one layout.
#
# Usage: hack/image/rootfs.sh OUT BIN_DIR [DEB_CACHE]
#   DEB_CACHE: where the .deb files are kept (`apt-get download` of the candidate versions of the
#   machine that builds, so the libraries match the release the binary was linked on); default a
#   temporary directory.
set -euo pipefail
umask 022
out="${1:?usage: rootfs.sh OUT BIN_DIR [DEB_CACHE]}"
bin="${2:?usage: rootfs.sh OUT BIN_DIR [DEB_CACHE]}"
debs="${3:-$(mktemp -d)}"
mkdir -p "$debs"

# The .deb of the candidate version of package $1 (downloaded when not kept yet).
deb_of() {
  local version file
  version="$(apt-cache policy "$1" | awk '/Candidate:/ {print $2}')"
  [ -n "$version" ] && [ "$version" != "(none)" ] || { echo "rootfs.sh: no candidate for $1" >&2; return 1; }
  # apt names files with the epoch's ':' as '%3a'.
  file="$(compgen -G "$debs/${1}_${version//:/%3a}_*.deb" | head -n 1 || true)"
  if [ -z "$file" ]; then
    # apt drops privileges to _apt for downloads; a directory it cannot write is fine as root.
    (cd "$debs" && apt-get download -o APT::Sandbox::User=root "$1=$version" >/dev/null)
    file="$(compgen -G "$debs/${1}_${version//:/%3a}_*.deb" | head -n 1)"
  fi
  echo "$file"
}

packages=(libc6 libgcc-s1 ca-certificates)
declare -A debfile
for p in "${packages[@]}"; do debfile[$p]="$(deb_of "$p")"; done
# libgcc-s1's copyright is its source package's base package's (gcc-12-base on Debian 12).
base="$(dpkg-deb -f "${debfile[libgcc-s1]}" Depends | grep -o 'gcc-[0-9]*-base' | head -n 1)"
debfile[$base]="$(deb_of "$base")"
packages+=("$base")

rm -rf "$out"
mkdir -p "$out"
extract="$(mktemp -d)"
trap 'rm -rf "$extract"' EXIT
for p in "${packages[@]}"; do
  mkdir -p "$extract/$p"
  dpkg-deb -x "${debfile[$p]}" "$extract/$p"
done

mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/tmp" "$out/usr/share/doc" \
  "$out/var/lib/dpkg/status.d"
# The shared libraries and the loader, wherever the package keeps them: lib/<triplet> and
# lib64 on Debian 12 amd64, the loader link in lib/ on arm64, usr/lib on merged-/usr releases.
# No gconv modules, locales or tools.
for p in libc6 libgcc-s1; do
  for d in lib lib64 usr/lib usr/lib64; do
    if [ -d "$extract/$p/$d" ]; then
      mkdir -p "$out/$d"
      cp -a "$extract/$p/$d/." "$out/$d/"
    fi
  done
done
rm -rf "$out"/usr/lib/*-linux-gnu/gconv "$out"/usr/lib/*-linux-gnu/audit
# A merged-/usr package ships no /lib: the loader path the binary asks for goes through it.
for d in lib lib64; do
  if [ ! -e "$out/$d" ] && [ -d "$out/usr/$d" ]; then ln -s "usr/$d" "$out/$d"; fi
done
# The CA bundle update-ca-certificates would write: every Mozilla root, concatenated in name order.
find "$extract/ca-certificates/usr/share/ca-certificates/mozilla" -name '*.crt' -print0 \
  | LC_ALL=C sort -z | xargs -0 cat > "$out/etc/ssl/certs/ca-certificates.crt"
for p in libc6 ca-certificates "$base"; do
  mkdir -p "$out/usr/share/doc/$p"
  cp "$extract/$p/usr/share/doc/$p/copyright" "$out/usr/share/doc/$p/copyright"
done
ln -s "$base" "$out/usr/share/doc/libgcc-s1"
# What is installed, as distroless records it: one dpkg status stanza per package.
for p in "${packages[@]}"; do
  { dpkg-deb -f "${debfile[$p]}" Package Version Architecture Source Maintainer Description 2>/dev/null \
      | sed '/^Description:/q'; echo "Status: install ok installed"; } > "$out/var/lib/dpkg/status.d/$p"
done
# The release the packages come from (the build machine's, which apt downloads for).
if [ -f /etc/os-release ]; then cp /etc/os-release "$out/etc/os-release"; fi

cat > "$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > "$out/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
echo 'hosts: files dns' > "$out/etc/nsswitch.conf"
chmod 1777 "$out/tmp"

install -m 0755 "$bin/aviary" "$out/usr/local/bin/aviary"
# Symbols are not shipped (they are a third of the binary); panics still name files and lines.
strip --strip-all "$out/usr/local/bin/aviary" 2>/dev/null || true

# The loader the binary asks for must be in the image (an image that cannot exec builds fine).
interp="$(readelf -l "$out/usr/local/bin/aviary" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')"
if [ -n "$interp" ] && [ ! -e "$out$interp" ]; then
  echo "rootfs.sh: the binary's loader $interp is not in the image" >&2
  exit 1
fi
for lib in $(readelf -d "$out/usr/local/bin/aviary" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
  if ! compgen -G "$out/lib/*/$lib" >/dev/null && ! compgen -G "$out/usr/lib/*/$lib" >/dev/null; then
    echo "rootfs.sh: the binary needs $lib, which is not in the image" >&2
    exit 1
  fi
done
