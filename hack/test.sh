#!/usr/bin/env bash
# `make test`: static checks, unit tests, CRD drift, then the integration tests against the local
# cluster, which this script brings up and tears down itself. The slow, cold Go build of the
# cluster starts first, in the background, while cargo checks run.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"
t0=$SECONDS
step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - t0))" "$*"; }

bash "$HERE/deps.sh"

step "building cluster binaries, helm and the gitops tools in the background (cached after the first run)"
mkdir -p target
bash "$HERE/build-bins.sh" k8s >target/build-bins.log 2>&1 && bash "$HERE/build-bins.sh" kwok >>target/build-bins.log 2>&1 \
  && bash "$HERE/build-bins.sh" helm >>target/build-bins.log 2>&1 \
  && bash "$HERE/build-bins.sh" gitops >>target/build-bins.log 2>&1 &
bins_pid=$!

step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "no import loops among the modules of src/plan and src/controller"
python3 hack/import-cycles.py
step "unit tests"
cargo test --locked --workspace --lib --bins
if [ -f src/bin/crdgen.rs ]; then
  step "CRD drift check (crds/ must equal what the Rust types generate)"
  cargo run --locked --quiet --bin crdgen -- --check crds
  cargo run --locked --quiet --bin crdgen -- --check charts/aviary/files/crds
fi
step "building integration tests"
cargo test --locked --workspace --tests --no-run
step "the controller's image (make image: a release build on three Debian packages, packed by umoci)"
bash hack/image/build.sh
# tests/image.rs runs it (and fails rather than skips when it is missing).
export AVIARY_REQUIRE_IMAGE=1

step "waiting for the cluster binaries"
if ! wait "$bins_pid"; then
  echo "building the cluster binaries failed:" >&2; tail -n 40 target/build-bins.log >&2; exit 1
fi
cat target/build-bins.log
step "release pipeline dry run: actionlint, shellcheck, the release scripts (docs/releasing.md)"
bash hack/release/dry-run.sh target/debug/kubectl-aviary

cleanup() { [ -n "${AVIARY_KEEP_CLUSTER:-}" ] || bash "$HERE/cluster.sh" down || true; }
trap cleanup EXIT
step "bringing up the local cluster"
bash "$HERE/cluster.sh" up
eval "$(bash "$HERE/cluster.sh" env)"
step "integration tests against the local cluster"
# --no-fail-fast: one failing suite must not hide the results of the others.
cargo test --locked --workspace --no-fail-fast --tests -- --test-threads="${TEST_THREADS:-2}" ${TEST_FILTER:-}
if [ -z "${TEST_FILTER:-}" ]; then
  step "least privilege: every RBAC grant of the chart was used in this run (audit log)"
  python3 hack/rbac-usage.py "$AVIARY_AUDIT_LOG"
fi
step "done in $((SECONDS - t0)) s"
