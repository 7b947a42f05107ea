//! Aviary: progressive delivery for Kubernetes.
//!
//! Dependency direction: `api` depends on nothing of ours; `plan` and `analysis` only on `api`;
//! `traffic` and `controller` wire I/O around them; `cli` depends on `api`, not the controller.
//! Operations: `delivery` (pure, on `api` and `plan`) derives delivery transitions; `metrics`,
//! `notify` and `leader` are the process's telemetry and single-writer plumbing.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod api;
pub mod build_info;
pub mod cli;
pub mod controller;
pub mod delivery;
pub mod fence;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod provider;
#[cfg(test)]
mod simulation;
pub mod traffic;
