# Aviary — see README.md. Every target installs or builds what it needs itself.
SHELL := /bin/bash

.PHONY: test demo lint unit crds chart image cluster-up cluster-down bins bench install-plugin

test:            ## fmt, clippy, unit tests, CRD drift, integration tests on a local cluster
	bash hack/test.sh

demo:            ## bring up the local cluster and Prometheus and walk a canary
	bash hack/demo.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --workspace --lib --bins

crds:            ## regenerate crds/*.yaml (and the chart's copy) from the Rust types
	cargo run --quiet --bin crdgen -- --out crds
	cargo run --quiet --bin crdgen -- --out charts/aviary/files/crds

chart:           ## lint and render the Helm chart (helm from `make bins`)
	bash -c 'eval "$$(bash hack/cluster.sh env)" && helm lint --strict charts/aviary && helm template aviary charts/aviary >/dev/null'

image:           ## the controller's OCI image, here, with no daemon (target/image/oci; prints digest and size)
	bash hack/image/build.sh

bins:            ## build and cache the cluster binaries (etcd, kube-*, kubectl, kwok, helm)
	bash hack/build-bins.sh all

bench:           ## footprint and reaction benchmark on a local cluster of its own (SIZES=100,1000 SOAK=1; docs/benchmarks.md)
	bash hack/bench.sh

cluster-up:
	bash hack/cluster.sh up

cluster-down:
	bash hack/cluster.sh down

install-plugin:  ## install kubectl-aviary (kubectl aviary …) into ~/.cargo/bin
	cargo install --locked --path . --bin kubectl-aviary
