//! Analysis core.
pub mod condition;
pub mod value;
