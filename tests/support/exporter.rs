//! The test-controlled metrics exporter lives in the traffic simulator's crate (tools/trafficsim,
//! `aviary_trafficsim::exporter`) so the tests and `make demo` use the same one.
#[allow(unused_imports)]
pub use aviary_trafficsim::exporter::*;
