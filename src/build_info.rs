//! What this binary is: its version (Cargo.toml, the one version source of crate, chart and
//! image), the git revision it was built from and the build date (the commit's: `build.rs`).

/// The release version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The full git revision, or `unknown`.
pub const REVISION: &str = env!("AVIARY_REVISION");
/// The build date, RFC 3339 (the commit's time, or `SOURCE_DATE_EPOCH`).
pub const BUILD_DATE: &str = env!("AVIARY_BUILD_DATE");

/// `--version`'s text: `0.1.0 (revision 1a2b…, built 2026-12-03T04:41:13Z)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("AVIARY_REVISION"),
    ", built ",
    env!("AVIARY_BUILD_DATE"),
    ")"
);
