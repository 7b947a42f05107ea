//! Test and demo tooling, not part of the product crate: a metrics exporter Prometheus scrapes,
//! and a traffic simulator that reads a Rollout's routing objects and serves request metrics as
//! if real traffic were split by those weights — closing the loop weights → traffic →
//! Prometheus → analysis → decision without a real mesh. Used by `make demo` (the
//! `aviary-trafficsim` binary) and by the integration tests (a dev-dependency of `aviary`).
#![forbid(unsafe_code)]

pub mod exporter;
pub mod traffic;
