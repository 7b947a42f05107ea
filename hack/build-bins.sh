#!/usr/bin/env bash
# Builds, once, every binary the local test cluster needs and caches them outside the repo,
# one directory per component and version:
#   $CACHE/k8s-$K8S_VERSION/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl,etcd}
#   $CACHE/kwok-$KWOK_VERSION/kwok
#   $CACHE/helm-$HELM_VERSION/helm
#   $CACHE/actionlint-$ACTIONLINT_VERSION/actionlint   (not in `all`: only the release dry run uses it)
#   $CACHE/gitops-tools-<hash of sources>/{kstatus,argocd-lua,argo-hash}   (hack/gitops-tools,
#     hack/argo-tools)
# Kubernetes has no installable main module (its go.mod replaces staging modules with local
# paths), so we generate a wrapper module whose own replaces point each staging module at its
# published v0.<minor>.<patch>. The staging list is read from the chosen version's go.mod.
# Usage: hack/build-bins.sh [k8s|kwok|helm|gitops|actionlint|all]   (default all). Idempotent.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=hack/versions.sh
. "$HERE/versions.sh"

what="${1:-all}"
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
log() { printf '[build-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

fail() { # component, logfile
  log "FAILED building $1; last lines of $2:"
  tail -n 40 "$2" >&2 || true
  exit 1
}

build_k8s() {
  local OUT="$CACHE/k8s-$K8S_VERSION" WRAP="$CACHE/wrapper-$K8S_VERSION"
  local BINS="kube-apiserver kube-controller-manager kube-scheduler kubectl"
  local ok=1
  for b in $BINS etcd; do [ -x "$OUT/$b" ] || ok=0; done
  if [ "$ok" = 1 ]; then log "k8s $K8S_VERSION binaries cached in $OUT"; return; fi
  log "building Kubernetes $K8S_VERSION + etcd from the Go module proxy (cold: 20-40 min on 2 cores)"
  mkdir -p "$OUT" "$WRAP"
  local LOG="$CACHE/build-k8s-$K8S_VERSION.log"; : > "$LOG"
  (
    cd "$WRAP"; rm -f go.mod go.sum
    go mod init kube-test-bins.local
    up="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    [ -f "$up" ] || { echo "cannot find go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
    go mod edit -go="$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$up")"
    gd="$(sed -n 's/^godebug \(.*\)$/\1/p' "$up")"; [ -z "$gd" ] || go mod edit -godebug="$gd"
    rest="${K8S_VERSION#v1.}"; staging="v0.$rest"
    mods="$(sed -n 's#^[[:space:]]*\(replace[[:space:]]\{1,\}\)\{0,1\}\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\2#p' "$up")"
    [ -n "$mods" ] || { echo "no staging replaces found in $up"; exit 1; }
    for m in $mods; do go mod edit -replace="$m=$m@$staging"; done
    etcd_ver="$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$up")"
    echo "etcd version pinned by k8s: $etcd_ver"
    # shellcheck disable=SC2046
    go get -tool $(for b in $BINS; do printf 'k8s.io/kubernetes/cmd/%s@%s ' "$b" "$K8S_VERSION"; done) \
      "go.etcd.io/etcd/server/v3@$etcd_ver"
  ) >>"$LOG" 2>&1 || fail "k8s wrapper module" "$LOG"
  local minor rest ts ld
  rest="${K8S_VERSION#v1.}"; minor="${rest%%.*}"
  ts="$(date -u +%Y-%m-%dT%H:%M:%SZ)"; ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld="$ld -X $p.gitTreeState=clean -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=$ts"
  done
  for b in etcd $BINS; do
    [ -x "$OUT/$b" ] && continue
    local t0=$SECONDS
    log "building $b (see $LOG)"
    if [ "$b" = etcd ]; then
      (cd "$WRAP" && go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3) >>"$LOG" 2>&1 || fail etcd "$LOG"
    else
      (cd "$WRAP" && go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$OUT/$b.tmp" "k8s.io/kubernetes/cmd/$b") >>"$LOG" 2>&1 || fail "$b" "$LOG"
    fi
    mv "$OUT/$b.tmp" "$OUT/$b"
    log "built $b in $((SECONDS - t0)) s"
  done
}

build_kwok() {
  local OUT="$CACHE/kwok-$KWOK_VERSION"
  if [ -x "$OUT/kwok" ]; then log "kwok $KWOK_VERSION cached"; return; fi
  log "building kwok $KWOK_VERSION (cold: several minutes)"
  local LOG="$CACHE/build-kwok-$KWOK_VERSION.log"; mkdir -p "$OUT"
  (GOFLAGS= GOBIN="$OUT" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION") >"$LOG" 2>&1 || fail kwok "$LOG"
}

build_helm() {
  local OUT="$CACHE/helm-$HELM_VERSION"
  if [ -x "$OUT/helm" ]; then log "helm $HELM_VERSION cached"; return; fi
  log "building helm $HELM_VERSION (cold: several minutes)"
  local LOG="$CACHE/build-helm-$HELM_VERSION.log"; mkdir -p "$OUT"
  (GOFLAGS= GOBIN="$OUT" go install -ldflags "-w -s -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") >"$LOG" 2>&1 || fail helm "$LOG"
}

build_actionlint() {
  local OUT="$CACHE/actionlint-$ACTIONLINT_VERSION"
  if [ -x "$OUT/actionlint" ]; then log "actionlint $ACTIONLINT_VERSION cached"; return; fi
  log "building actionlint $ACTIONLINT_VERSION"
  local LOG="$CACHE/build-actionlint-$ACTIONLINT_VERSION.log"; mkdir -p "$OUT"
  (GOBIN="$OUT" go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION") >"$LOG" 2>&1 \
    || fail actionlint "$LOG"
}

build_gitops() {
  local OUT; OUT="$(gitops_tools_dir)"
  if [ -x "$OUT/kstatus" ] && [ -x "$OUT/argocd-lua" ] && [ -x "$OUT/argo-hash" ]; then
    log "gitops tools cached"; return
  fi
  log "building the test tools of other projects (kstatus, argocd-lua, argo-hash)"
  local LOG="$CACHE/build-gitops-tools.log"; mkdir -p "$OUT"
  (cd "$HERE/gitops-tools" && go build -trimpath -o "$OUT/" ./cmd/...) >"$LOG" 2>&1 || fail gitops-tools "$LOG"
  (cd "$HERE/argo-tools" && go build -trimpath -o "$OUT/" ./cmd/...) >>"$LOG" 2>&1 || fail argo-tools "$LOG"
}

mkdir -p "$CACHE"
case "$what" in
  k8s) build_k8s ;;
  kwok) build_kwok ;;
  helm) build_helm ;;
  gitops) build_gitops ;;
  actionlint) build_actionlint ;;
  all) build_k8s; build_kwok; build_helm; build_gitops ;;
  *) echo "usage: $0 [k8s|kwok|helm|gitops|actionlint|all]" >&2; exit 2 ;;
esac
