//! Aviary: progressive delivery for Kubernetes.
//!
//! Dependency direction: `api` depends on nothing of ours; `plan` and `analysis` only on `api`;
//! `traffic` and `controller` wire I/O around them; `cli` depends on `api`, not the controller.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod api;
pub mod cli;
pub mod controller;
pub mod plan;
pub mod provider;
pub mod sim;
pub mod traffic;
