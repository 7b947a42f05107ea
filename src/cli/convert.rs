//! `convert -f FILE` (placeholder).

use std::path::Path;

use super::CliError;

pub fn run(_file: &Path) -> Result<i32, CliError> {
    Ok(0)
}
