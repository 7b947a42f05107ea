//! The test-controlled metrics exporter lives in the library (`aviary::sim::exporter`) so the
//! traffic simulator and `make demo` use the same one.
#[allow(unused_imports)]
pub use aviary::sim::exporter::*;
