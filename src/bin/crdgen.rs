//! Writes Aviary's CustomResourceDefinitions, generated from the Rust types in `aviary::api`.
//!
//! ```text
//! cargo run --bin crdgen                 # all CRDs to stdout, as one YAML stream
//! cargo run --bin crdgen -- --out crds   # one file per CRD in crds/
//! cargo run --bin crdgen -- --check crds # exit 1 if crds/ differs from the types
//! ```

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Generate Aviary's CRDs from the Rust types")]
struct Args {
    /// Write one file per CRD into this directory.
    #[arg(long, value_name = "DIR", conflicts_with = "check")]
    out: Option<PathBuf>,
    /// Compare the files in this directory with the generated CRDs; fail on any difference.
    #[arg(long, value_name = "DIR")]
    check: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("crdgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let files = aviary::api::crd_files().context("generating CRDs")?;
    if let Some(dir) = &args.out {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, yaml) in &files {
            let path = dir.join(name);
            fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        return Ok(true);
    }
    if let Some(dir) = &args.check {
        return check(dir, &files);
    }
    for (_, yaml) in &files {
        print!("---\n{yaml}");
    }
    Ok(true)
}

fn check(dir: &Path, files: &[(&'static str, String)]) -> anyhow::Result<bool> {
    let mut ok = true;
    for (name, yaml) in files {
        let path = dir.join(name);
        match fs::read_to_string(&path) {
            Ok(on_disk) if on_disk == *yaml => {}
            Ok(_) => {
                eprintln!("{} is out of date with the Rust types", path.display());
                ok = false;
            }
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                ok = false;
            }
        }
    }
    if !ok {
        eprintln!(
            "regenerate with: cargo run --bin crdgen -- --out {}",
            dir.display()
        );
    }
    Ok(ok)
}
