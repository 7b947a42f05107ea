//! Build information for `--version`: the git revision and the build date, as environment
//! variables the code reads with `env!` (src/build_info.rs). The date is the commit's (or
//! `SOURCE_DATE_EPOCH`'s), not the clock's, so one commit builds the same binary. Builds without
//! git (the Dockerfile copies no `.git`) take `AVIARY_REVISION` and `SOURCE_DATE_EPOCH` from the
//! environment.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch (H. Hinnant's civil_from_days).
fn rfc3339(epoch: i64) -> String {
    let (days, secs) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// Whether this crate is the top of a git checkout (not a source tarball unpacked inside
/// someone else's repository, nor a crate in `~/.cargo` under a dotfiles repository).
fn own_checkout() -> bool {
    let (Some(top), Ok(dir)) = (
        git(&["rev-parse", "--show-toplevel"]),
        std::env::var("CARGO_MANIFEST_DIR"),
    ) else {
        return false;
    };
    let canonical = |p: &str| std::fs::canonicalize(p).ok();
    canonical(&top).is_some_and(|t| Some(t) == canonical(&dir))
}

fn main() {
    println!("cargo:rerun-if-env-changed=AVIARY_REVISION");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let own = own_checkout();
    if own {
        // A new commit (HEAD moving, or a branch: refs/heads is scanned as a directory, so a
        // branch whose ref was packed is seen when it moves again) builds new information. Only
        // paths that exist: cargo reruns a script whose watched path is missing on every build.
        for path in ["HEAD", "packed-refs", "refs/heads"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path])
                && std::path::Path::new(&p).exists()
            {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    } else {
        println!("cargo:rerun-if-changed=build.rs");
    }
    let from_git = |args: &[&str]| if own { git(args) } else { None };
    let revision = std::env::var("AVIARY_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| from_git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .or_else(|| from_git(&["log", "-1", "--format=%ct"]))
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    println!("cargo:rustc-env=AVIARY_REVISION={revision}");
    println!("cargo:rustc-env=AVIARY_BUILD_DATE={}", rfc3339(epoch));
}
