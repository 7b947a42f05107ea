//! Analysis core.
pub mod condition;
pub mod prometheus;
pub mod template;
pub mod value;
