#!/usr/bin/env bash
# The release pipeline, dry: lints both workflows (actionlint, with shellcheck on their run:
# blocks when it is installed) and the release scripts, then runs every step of
# .github/workflows/release.yml that needs no network, on this machine, and checks what each
# one writes. Nothing is pushed or published; temporary files are removed. docs/releasing.md.
#
# Usage: hack/release/dry-run.sh [BIN]
#   BIN: any executable standing in for kubectl-aviary, packed as all four os/arch archives
#   (default target/release/kubectl-aviary, else target/debug/kubectl-aviary).
# Needs: python3 with PyYAML, helm (PATH or hack/build-bins.sh helm), actionlint (PATH or
# hack/build-bins.sh actionlint, built on first use from the Go module proxy).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
# shellcheck source=hack/release/vars.sh
. hack/release/vars.sh
# shellcheck source=hack/versions.sh
. hack/versions.sh
rel=hack/release
t0=$SECONDS
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
checks=0
ok() { checks=$((checks + 1)); printf '  ok   %s\n' "$*"; }
skip() { printf '  skip %s\n' "$*"; }
fail() { printf '  FAIL %s\n' "$*" >&2; exit 1; }
step() { printf '== %s\n' "$*"; }
# Runs a command that must fail; its output goes to a log shown only if it unexpectedly passes.
must_fail() { # description, command...
  local what="$1"; shift
  if "$@" >"$tmp/must-fail.log" 2>&1; then cat "$tmp/must-fail.log" >&2; fail "$what: passed, should fail"; fi
  ok "$what (refused)"
}
ensure_tool() { # name, build-bins target, cached path -> prints the command
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  if [ ! -x "$3" ]; then
    echo "  ..   building $1 (hack/build-bins.sh $2)" >&2
    bash hack/build-bins.sh "$2" >&2
  fi
  echo "$3"
}

bin="${1:-}"
if [ -z "$bin" ]; then
  for b in target/release/kubectl-aviary target/debug/kubectl-aviary; do
    if [ -x "$b" ]; then bin="$b"; break; fi
  done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then fail "no kubectl-aviary binary: pass one (any executable) as \$1"; fi
actionlint="$(ensure_tool actionlint actionlint "$CACHE/actionlint-$ACTIONLINT_VERSION/actionlint")"
helm="$(ensure_tool helm helm "$CACHE/helm-$HELM_VERSION/helm")"
echo "dry run of the release of $OWNER/$REPO v$VERSION (stand-in binary: $bin)"

step "lint"
workflows=(.github/workflows/ci.yml .github/workflows/release.yml)
scripts=("$rel"/*.sh)
if command -v shellcheck >/dev/null 2>&1; then
  "$actionlint" "${workflows[@]}" || fail "actionlint"
  ok "actionlint $("$actionlint" -version | head -1): ${workflows[*]} (run: blocks shellchecked)"
  shellcheck -x -P SCRIPTDIR -s bash "${scripts[@]}" || fail "shellcheck"
  ok "shellcheck: ${scripts[*]}"
else
  "$actionlint" "${workflows[@]}" || fail "actionlint"
  ok "actionlint $("$actionlint" -version | head -1): ${workflows[*]}"
  skip "shellcheck: not installed (apt-get install shellcheck); run: blocks and scripts not shellchecked"
fi
python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' "$rel/krew-manifest.py" || fail "krew-manifest.py does not parse"
ok "krew-manifest.py parses"
# The project's home and version have one source each (project.env, Cargo.toml).
if grep -nF -e "$OWNER" -e "$VERSION" "${workflows[@]}"; then fail "a workflow spells the owner or version; read them from hack/release/vars.sh"; fi
ok "the workflows spell neither $OWNER nor $VERSION"
# package-plugin.sh runs on macOS: bash 3.2, no bash-4 features.
if grep -nE 'declare -A|mapfile|readarray|\$\{[A-Za-z_]+(,,|\^\^)|&>>|\|&|local -n' "$rel/package-plugin.sh"; then
  fail "package-plugin.sh uses bash 4 (it runs on macOS's bash 3.2)"
fi
ok "package-plugin.sh uses no bash-4 features"
# Every script the release workflow runs is one this dry run runs.
tested="check-version.sh github-env.sh image-merge.sh package-plugin.sh checksums.sh krew-manifest.py install-yaml.sh release-notes.sh"
while read -r s; do
  [ -f "$s" ] || fail "release.yml runs $s, which does not exist"
  case " $tested " in *" ${s#hack/release/} "*) ;; *) fail "release.yml runs $s, which this dry run does not test" ;; esac
done < <(grep -oE '(bash|python3) hack/release/[A-Za-z0-9_.-]+' .github/workflows/release.yml | cut -d' ' -f2 | sort -u)
ok "every hack/release script release.yml runs exists and is tested below"

step "verify: check-version.sh, github-env.sh"
# (GITHUB_REPOSITORY unset: under CI, a fork's run of this dry run tests the scripts, not the fork.)
env -u GITHUB_REPOSITORY bash "$rel/check-version.sh" "v$VERSION" >/dev/null || fail "check-version.sh v$VERSION"
env -u GITHUB_REPOSITORY bash "$rel/check-version.sh" "refs/tags/v$VERSION" >/dev/null || fail "check-version.sh refs/tags/v$VERSION"
GITHUB_REPOSITORY="$OWNER/$REPO" bash "$rel/check-version.sh" "v$VERSION" >/dev/null || fail "check-version.sh in $OWNER/$REPO"
ok "check-version.sh accepts v$VERSION (Cargo.toml = Chart.yaml version = appVersion)"
must_fail "check-version.sh v$VERSION.1" env -u GITHUB_REPOSITORY bash "$rel/check-version.sh" "v$VERSION.1"
must_fail "check-version.sh run in a fork" env GITHUB_REPOSITORY="someone-else/$REPO" bash "$rel/check-version.sh" "v$VERSION"
bash "$rel/github-env.sh" > "$tmp/env"
for name in OWNER REPO VERSION IMAGE SOURCE_URL REVISION SOURCE_DATE_EPOCH CREATED; do
  grep -qxF "$name=${!name}" "$tmp/env" || fail "github-env.sh: no $name=${!name}"
done
[ "$(wc -l < "$tmp/env")" -eq 8 ] || fail "github-env.sh: expected 8 lines"
ok "github-env.sh: OWNER REPO VERSION IMAGE SOURCE_URL REVISION SOURCE_DATE_EPOCH CREATED"

step "image-manifest: image-merge.sh (docker faked: the command line and the platform check)"
mkdir -p "$tmp/digests" "$tmp/fake"
d_amd="$(printf 'amd64' | sha256sum | cut -c1-64)"; d_arm="$(printf 'arm64' | sha256sum | cut -c1-64)"
touch "$tmp/digests/$d_amd" "$tmp/digests/$d_arm"
list_digest="sha256:$(printf 'list' | sha256sum | cut -c1-64)"
cat > "$tmp/fake/docker" <<FAKE
#!/usr/bin/env bash
echo "\$*" >> "$tmp/fake/calls"
case "\$*" in
  "buildx imagetools inspect "*) cat "$tmp/fake/manifest.json" ;;
esac
FAKE
chmod +x "$tmp/fake/docker"
manifest() { # platforms... -> the fake registry's manifest list
  python3 - "$list_digest" "$@" > "$tmp/fake/manifest.json" <<'PY'
import json, sys
digest, platforms = sys.argv[1], sys.argv[2:]
ms = [{"digest": "sha256:" + "0" * 64, "platform": {"os": p.split("/")[0], "architecture": p.split("/")[1]}} for p in platforms]
ms.append({"digest": "sha256:" + "1" * 64, "platform": {"os": "unknown", "architecture": "unknown"},
           "annotations": {"vnd.docker.reference.type": "attestation-manifest"}})
print(json.dumps({"schemaVersion": 2, "digest": digest, "manifests": ms}))
PY
}
manifest linux/amd64 linux/arm64
out="$(DOCKER="$tmp/fake/docker" bash "$rel/image-merge.sh" "$tmp/digests" 2>/dev/null)" || fail "image-merge.sh"
[ "$out" = "digest=$list_digest" ] || fail "image-merge.sh printed '$out', not digest=$list_digest"
create="$(grep '^buildx imagetools create ' "$tmp/fake/calls")"
for want in "--tag $IMAGE:$VERSION" "$IMAGE@sha256:$d_amd" "$IMAGE@sha256:$d_arm" \
  "index:org.opencontainers.image.source=$SOURCE_URL" "index:org.opencontainers.image.version=$VERSION" \
  "index:org.opencontainers.image.revision=$REVISION"; do
  case "$create" in *"$want"*) ;; *) fail "image-merge.sh: imagetools create lacks '$want': $create" ;; esac
done
ok "image-merge.sh: imagetools create --tag $IMAGE:$VERSION from both digests, OCI annotations; prints the list's digest"
manifest linux/amd64
must_fail "image-merge.sh of a list without linux/arm64" env DOCKER="$tmp/fake/docker" bash "$rel/image-merge.sh" "$tmp/digests"
rm "$tmp/digests/$d_arm"
must_fail "image-merge.sh with one digest" env DOCKER="$tmp/fake/docker" bash "$rel/image-merge.sh" "$tmp/digests"

step "plugin: package-plugin.sh for the four os/arch"
dist="$tmp/dist"
for p in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64; do
  os="${p%/*}"; arch="${p#*/}"
  if [ "$os" = darwin ]; then
    # As on the macOS runners: no vars.sh, VERSION and SOURCE_DATE_EPOCH from the environment.
    a="$(VERSION="$VERSION" SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" bash "$rel/package-plugin.sh" "$bin" "$os" "$arch" "$dist")"
  else
    a="$(env -u VERSION bash "$rel/package-plugin.sh" "$bin" "$os" "$arch" "$dist")"
  fi
  [ "$a" = "$dist/kubectl-aviary_${VERSION}_${os}_${arch}.tar.gz" ] || fail "package-plugin.sh wrote $a"
  python3 - "$a" "$bin" <<'PY' || fail "package-plugin.sh: $a"
import sys, tarfile
archive, binary = sys.argv[1:]
with tarfile.open(archive) as t:
    ms = {m.name: m for m in t.getmembers()}
    assert sorted(ms) == ["README.md", "kubectl-aviary"], sorted(ms)
    b = ms["kubectl-aviary"]
    assert b.isfile() and b.mode == 0o755 and b.uid == 0 and b.gid == 0, (b.mode, b.uid)
    assert t.extractfile(b).read() == open(binary, "rb").read(), "binary differs"
PY
done
ok "package-plugin.sh: 4 archives, each the binary (0755, 0:0, byte-identical) and a README at the root"
mkdir -p "$tmp/again"
a2="$(bash "$rel/package-plugin.sh" "$bin" linux amd64 "$tmp/again")"
cmp -s "$a2" "$dist/kubectl-aviary_${VERSION}_linux_amd64.tar.gz" || fail "package-plugin.sh is not reproducible"
ok "package-plugin.sh is reproducible (same input, same bytes)"
must_fail "package-plugin.sh windows/amd64" bash "$rel/package-plugin.sh" "$bin" windows amd64 "$tmp/again"
must_fail "package-plugin.sh of a missing binary" bash "$rel/package-plugin.sh" "$tmp/none" linux amd64 "$tmp/again"

step "release: install-yaml.sh, helm lint and package, checksums.sh, krew-manifest.py, release-notes.sh"
digest="sha256:$(printf 'image' | sha256sum | cut -c1-64)"
PATH="$(dirname "$helm"):$PATH" bash "$rel/install-yaml.sh" "$dist/install.yaml" "$digest" >/dev/null || fail "install-yaml.sh"
PATH="$(dirname "$helm"):$PATH" bash "$rel/install-yaml.sh" "$tmp/install-tag.yaml" >/dev/null || fail "install-yaml.sh (no digest)"
check_install() { # file, image
  python3 - "$1" "$2" charts/aviary/files/crds <<'PY'
import glob, os, sys, yaml
path, image, crd_dir = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
kinds = {}
for d in docs:
    kinds.setdefault(d["kind"], []).append(d)
want_crds = {yaml.safe_load(open(f))["metadata"]["name"] for f in glob.glob(os.path.join(crd_dir, "*.yaml"))}
got_crds = {d["metadata"]["name"] for d in kinds.get("CustomResourceDefinition", [])}
assert want_crds and got_crds == want_crds, f"CRDs {sorted(got_crds)} != {sorted(want_crds)}"
assert docs[0]["kind"] == "Namespace" and docs[0]["metadata"]["name"] == "aviary-system", "the Namespace comes first"
for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"):
    assert kind in kinds, f"no {kind}"
cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
for d in docs:
    if d["kind"] not in cluster_scoped:
        assert d["metadata"].get("namespace") == "aviary-system", f'{d["kind"]} {d["metadata"]["name"]} not in aviary-system'
sa = kinds["ServiceAccount"][0]["metadata"]["name"]
subjects = [s for b in kinds["ClusterRoleBinding"] for s in b["subjects"]]
assert {"kind": "ServiceAccount", "name": sa, "namespace": "aviary-system"} in subjects, subjects
(dep,) = kinds["Deployment"]
images = [c["image"] for c in dep["spec"]["template"]["spec"]["containers"]]
assert images == [image], f"Deployment images {images} != [{image}]"
assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa
print(f"{len(docs)} objects: {', '.join(f'{k} x{len(v)}' if len(v) > 1 else k for k, v in kinds.items())}")
PY
}
summary="$(check_install "$dist/install.yaml" "$IMAGE:$VERSION@$digest")" || fail "install.yaml (digest)"
ok "install.yaml: $summary; image $IMAGE:$VERSION@sha256:…"
check_install "$tmp/install-tag.yaml" "$IMAGE:$VERSION" >/dev/null || fail "install.yaml (tag)"
ok "install.yaml without a digest: image $IMAGE:$VERSION"
must_fail "install-yaml.sh with a malformed digest" env PATH="$(dirname "$helm"):$PATH" bash "$rel/install-yaml.sh" "$tmp/bad.yaml" sha256:abc
if command -v kubectl >/dev/null 2>&1 && kubectl version --request-timeout=3s >/dev/null 2>&1; then
  kubectl apply --dry-run=client -f "$dist/install.yaml" >/dev/null || fail "kubectl apply --dry-run=client -f install.yaml"
  ok "kubectl apply --dry-run=client -f install.yaml"
else
  skip "kubectl apply --dry-run=client: no API server reachable (client dry run needs discovery); checked with PyYAML above"
fi
"$helm" lint --strict charts/aviary >"$tmp/lint.log" 2>&1 || { cat "$tmp/lint.log" >&2; fail "helm lint --strict charts/aviary"; }
ok "helm lint --strict charts/aviary"
"$helm" package charts/aviary --destination "$dist" >/dev/null || fail "helm package"
[ -f "$dist/aviary-$VERSION.tgz" ] || fail "helm package wrote no aviary-$VERSION.tgz"
ok "helm package: aviary-$VERSION.tgz (helm push to oci://ghcr.io/$OWNER/charts not run: network)"
bash "$rel/checksums.sh" "$dist" >/dev/null || fail "checksums.sh"
(cd "$dist" && sha256sum --quiet -c checksums.txt) || fail "checksums.txt does not verify"
n="$(wc -l < "$dist/checksums.txt")"
[ "$n" -eq 6 ] || fail "checksums.txt has $n lines, not 6 (4 archives, install.yaml, chart)"
ok "checksums.sh: $n assets, sha256sum -c passes"
VERSION="$VERSION" OWNER="$OWNER" REPO="$REPO" python3 "$rel/krew-manifest.py" "$dist" >/dev/null || fail "krew-manifest.py"
python3 - "$dist" "$OWNER" "$REPO" "$VERSION" <<'PY' || fail "aviary.yaml"
import hashlib, os, sys, yaml
dist, owner, repo, version = sys.argv[1:]
m = yaml.safe_load(open(os.path.join(dist, "aviary.yaml")))
assert m["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2" and m["kind"] == "Plugin", m
assert m["metadata"]["name"] == "aviary" and m["spec"]["version"] == "v" + version
for key in ("homepage", "shortDescription", "description"):
    assert m["spec"].get(key), f"no spec.{key}"
base = f"https://github.com/{owner}/{repo}/releases/download/v{version}/"
seen = set()
for p in m["spec"]["platforms"]:
    labels = p["selector"]["matchLabels"]
    os_, arch = labels["os"], labels["arch"]
    seen.add((os_, arch))
    name = f"kubectl-aviary_{version}_{os_}_{arch}.tar.gz"
    assert p["uri"] == base + name, p["uri"]
    assert p["sha256"] == hashlib.sha256(open(os.path.join(dist, name), "rb").read()).hexdigest(), name
    assert p["bin"] == "kubectl-aviary"
assert seen == {(o, a) for o in ("linux", "darwin") for a in ("amd64", "arm64")}, seen
PY
ok "krew-manifest.py: aviary.yaml, 4 platforms, os/arch selectors, each uri under https://github.com/$OWNER/$REPO/releases/download/v$VERSION/ with its archive's sha256"
mkdir -p "$tmp/tampered"
cp "$dist"/kubectl-aviary_* "$dist/checksums.txt" "$tmp/tampered/"
printf 'x' >> "$tmp/tampered/kubectl-aviary_${VERSION}_darwin_arm64.tar.gz"
must_fail "krew-manifest.py with an archive that does not match checksums.txt" \
  env VERSION="$VERSION" OWNER="$OWNER" REPO="$REPO" python3 "$rel/krew-manifest.py" "$tmp/tampered"
rm "$tmp/tampered/kubectl-aviary_${VERSION}_darwin_arm64.tar.gz"
must_fail "krew-manifest.py with an archive missing" \
  env VERSION="$VERSION" OWNER="$OWNER" REPO="$REPO" python3 "$rel/krew-manifest.py" "$tmp/tampered"
bash "$rel/release-notes.sh" "$digest" > "$tmp/notes.md" || fail "release-notes.sh"
for want in "$IMAGE:$VERSION@$digest" "oci://ghcr.io/$OWNER/charts/aviary --version $VERSION" \
  "$SOURCE_URL/releases/download/v$VERSION/install.yaml" "$SOURCE_URL/releases/download/v$VERSION/aviary.yaml" \
  "--certificate-identity $SOURCE_URL/.github/workflows/release.yml@refs/tags/v$VERSION"; do
  grep -qF -- "$want" "$tmp/notes.md" || fail "release-notes.sh: no '$want'"
done
ok "release-notes.sh: image by digest, cosign verify identity, helm OCI, install.yaml and krew URLs"
echo "   release assets: $(find "$dist" -maxdepth 1 -type f -exec basename {} \; | LC_ALL=C sort | tr '\n' ' ')"

echo "dry run passed: $checks checks in $((SECONDS - t0)) s. Not run (network/GitHub only): image builds and" \
  "pushes, imagetools against ghcr.io, cosign sign/verify, helm push, gh release create."
