//! Test and demo tooling, not used by the controller: a metrics exporter Prometheus scrapes,
//! and a traffic simulator that reads a Rollout's routing objects and serves request metrics as
//! if real traffic were split by those weights — closing the loop weights → traffic →
//! Prometheus → analysis → decision without a real mesh.

pub mod exporter;
pub mod traffic;
