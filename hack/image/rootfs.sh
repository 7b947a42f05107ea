#!/usr/bin/env bash
# Assembles the controller image's root filesystem in OUT from the built binaries in BIN_DIR and
# three Debian packages (libc6, libgcc-s1, ca-certificates): the dynamic libraries the binaries
# need, the CA bundle, a passwd/group naming uid/gid 65532 (nonroot), and the packages' copyright
# files. No shell, no package manager. The Dockerfile's build stage and `make image`
# (hack/image/build.sh) both run this script, so both images have one layout.
#
# Usage: hack/image/rootfs.sh OUT BIN_DIR [DEB_CACHE]
#   DEB_CACHE: where the .deb files are downloaded (`apt-get download`, the Debian release of the
#   machine that builds); default a temporary directory.
set -euo pipefail
out="${1:?usage: rootfs.sh OUT BIN_DIR [DEB_CACHE]}"
bin="${2:?usage: rootfs.sh OUT BIN_DIR [DEB_CACHE]}"
debs="${3:-$(mktemp -d)}"
packages=(libc6 libgcc-s1 ca-certificates)

mkdir -p "$debs"
download() {
  # apt drops privileges to _apt for downloads; a directory it cannot write is fine as root.
  (cd "$debs" && apt-get download -o APT::Sandbox::User=root "$@" >/dev/null)
}
missing=()
for p in "${packages[@]}"; do
  compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] || download "${missing[@]}"
# libgcc-s1's copyright is its source package's base package's (gcc-12-base on Debian 12).
base="$(dpkg-deb -f "$(ls "$debs"/libgcc-s1_*.deb | head -1)" Depends | grep -o 'gcc-[0-9]*-base' | head -1)"
compgen -G "$debs/${base}_*.deb" >/dev/null || download "$base"
packages+=("$base")

rm -rf "$out"
mkdir -p "$out"
extract="$(mktemp -d)"
trap 'rm -rf "$extract"' EXIT
for p in "${packages[@]}"; do
  deb="$(ls "$debs/${p}"_*.deb | head -1)"
  mkdir -p "$extract/$p"
  dpkg-deb -x "$deb" "$extract/$p"
  echo "$p $(dpkg-deb -f "$deb" Version)" >> "$extract/versions"
done

# The multiarch directory the libraries live in (x86_64-linux-gnu, aarch64-linux-gnu).
triplet="$(basename "$(ls -d "$extract"/libc6/lib/*-linux-gnu | head -1)")"
mkdir -p "$out/lib/$triplet" "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/tmp" \
  "$out/usr/share/doc"
# glibc's shared objects (nss_files and nss_dns are part of libc.so.6 since 2.34): no gconv
# modules, locales or tools.
cp -a "$extract/libc6/lib/$triplet/." "$out/lib/$triplet/"
[ -d "$extract/libc6/lib64" ] && cp -a "$extract/libc6/lib64" "$out/lib64"
cp -a "$extract/libgcc-s1/lib/$triplet/." "$out/lib/$triplet/"
# The CA bundle update-ca-certificates would write: every Mozilla root, concatenated in name order.
find "$extract/ca-certificates/usr/share/ca-certificates/mozilla" -name '*.crt' -print0 \
  | LC_ALL=C sort -z | xargs -0 cat > "$out/etc/ssl/certs/ca-certificates.crt"
for p in libc6 ca-certificates "$base"; do
  mkdir -p "$out/usr/share/doc/$p"
  cp "$extract/$p/usr/share/doc/$p/copyright" "$out/usr/share/doc/$p/copyright"
done
ln -s "$base" "$out/usr/share/doc/libgcc-s1"
cp "$extract/versions" "$out/usr/share/doc/debian-packages"

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

for b in aviary; do
  install -m 0755 "$bin/$b" "$out/usr/local/bin/$b"
  # Symbols are not shipped (they are half the binary); panics still name files and lines.
  strip --strip-all "$out/usr/local/bin/$b" 2>/dev/null || true
done
