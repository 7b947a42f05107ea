//! `kubectl aviary`: inspect and steer Aviary Rollouts. Installed on PATH as `kubectl-aviary`,
//! kubectl runs it for `kubectl aviary …`.

use std::path::PathBuf;
use std::process::ExitCode;

use aviary::cli::{self, CliError, Output, Target};
use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0   done; for status: the rollout is Healthy
  1   the rollout is Degraded or aborted, lint/convert found problems, or the rollout's state refuses the action
  2   status --timeout ran out
  3   not found (rollout, revision, container, file)
  4   Aviary is not installed in the cluster
  5   no permission, or credentials rejected
  6   no cluster: unreachable, or no usable kubeconfig/context
  7   the API server refused the request otherwise (conflict, invalid)
  64  usage error";

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-aviary",
    bin_name = "kubectl aviary",
    version = aviary::build_info::LONG_VERSION,
    about = "Inspect and steer Aviary Rollouts (canary and blue-green) from the terminal",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// Namespace (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    namespace: Option<String>,
}

#[derive(Args, Debug)]
struct OutputArg {
    /// Output format: json or yaml (default: text for people).
    #[arg(short = 'o', long = "output", value_name = "FORMAT")]
    output: Option<String>,
}

impl OutputArg {
    fn get(&self) -> Result<Output, CliError> {
        self.output
            .as_deref()
            .map(Output::parse)
            .unwrap_or(Ok(Output::Text))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show a rollout as a tree: status, strategy, step, weights, images, then revisions →
    /// ReplicaSets → pods, and AnalysisRuns with each metric's last values.
    Get {
        /// What to get: rollout (ro).
        #[arg(value_parser = ["rollout", "rollouts", "ro"])]
        kind: String,
        /// The rollout's name.
        name: String,
        /// Redraw on every change (in place on a terminal; successive frames otherwise).
        #[arg(short = 'w', long)]
        watch: bool,
        /// No colours (also when NO_COLOR is set or stdout is not a terminal).
        #[arg(long)]
        no_color: bool,
        /// With --watch: stop after this many seconds (default: until interrupted).
        #[arg(long, value_name = "SECONDS")]
        timeout_seconds: Option<u64>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// List rollouts: name, strategy, status, step, weights, readiness, age.
    List {
        /// What to list: rollouts (ro).
        #[arg(value_parser = ["rollouts", "rollout", "ro"], default_value = "rollouts")]
        kind: String,
        /// In every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// After the list, print a line whenever a rollout changes.
        #[arg(short = 'w', long)]
        watch: bool,
        /// No colours.
        #[arg(long)]
        no_color: bool,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Wait until a rollout is Healthy (exit 0), Degraded or aborted (exit 1, with the
    /// message) or the timeout runs out (exit 2), printing progress. For CI/CD pipelines.
    Status {
        name: String,
        /// Give up after this long: 30s, 5m, 1h (default 0: wait forever).
        #[arg(short = 't', long, default_value = "0", value_name = "DURATION")]
        timeout: String,
        /// Wait for a verdict (--watch=false: report the current state and exit 2 unless
        /// Healthy or Degraded).
        #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        watch: bool,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Promote: end the current pause, or skip the current step; --full skips all remaining
    /// steps, pauses and analysis.
    Promote {
        name: String,
        /// Skip all remaining steps, pauses and analysis.
        #[arg(long)]
        full: bool,
    },
    /// Abort the update: traffic and pods go back to the stable revision; the rollout is
    /// Degraded until retried or its template changes.
    Abort { name: String },
    /// Retry an aborted update from its first step (`retry NAME` or `retry rollout NAME`).
    Retry {
        #[arg(num_args = 1..=2, value_names = ["rollout", "NAME"], required = true)]
        args: Vec<String>,
    },
    /// Pause: no step advances until resumed or promoted (sets spec.paused).
    Pause { name: String },
    /// Resume a paused rollout (unsets spec.paused).
    Resume { name: String },
    /// Restart the rollout's pods by setting spec.restartAt: the controller evicts every pod
    /// created before then, one at a time (up to maxUnavailable), each once the previous
    /// replacement is available.
    Restart {
        name: String,
        /// Restart this long from now (e.g. 10s).
        #[arg(short = 'i', long = "in", value_name = "DURATION")]
        in_: Option<String>,
    },
    /// Set something on a rollout.
    Set {
        #[command(subcommand)]
        what: SetCommand,
    },
    /// Roll back to a previous revision (default: the one before the current), by copying its
    /// pod template into the rollout.
    Undo {
        name: String,
        /// The revision to go back to (see `history`).
        #[arg(long, value_name = "N")]
        to_revision: Option<i64>,
    },
    /// List a rollout's revisions: images, when, and how each ended.
    History {
        name: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Validate Rollout and AnalysisTemplate YAML offline, with the controller's types and
    /// admission rules.
    Lint {
        /// The YAML file (`-` for stdin).
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
    },
    /// Take over a running Argo Rollout (argoproj.io/v1alpha1) as an Aviary Rollout of the same
    /// name: its ReplicaSets, Services and routing objects where they stand, at its step, without
    /// restarting a pod or moving traffic. Resumes where a stopped run left off.
    Migrate { name: String },
    /// Convert Argo Rollouts manifests (argoproj.io/v1alpha1) to Aviary's, listing every field
    /// Aviary does not support (exit 1 if any).
    Convert {
        /// The YAML file (`-` for stdin).
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the plugin's version, revision and build date, and the version of each Aviary
    /// controller the cluster runs (warning when it differs).
    Version {
        /// The plugin's version only: no cluster is asked.
        #[arg(long)]
        client: bool,
        #[command(flatten)]
        output: OutputArg,
    },
}

#[derive(Subcommand, Debug)]
enum SetCommand {
    /// Set container images: `set image NAME CONTAINER=IMAGE...` (`*=IMAGE` for all).
    Image {
        name: String,
        #[arg(required = true, value_name = "CONTAINER=IMAGE")]
        images: Vec<String>,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, CliError> {
    cli::status::parse_duration(s)
        .map_err(|e| CliError::Usage(format!("invalid duration '{s}': {e} (e.g. 10s, 5m)")))
}

async fn dispatch(cli: Cli) -> Result<i32, CliError> {
    let target = Target {
        kubeconfig: cli.global.kubeconfig,
        context: cli.global.context,
        namespace: cli.global.namespace,
    };
    let connect = || cli::connect(&target);
    match cli.command {
        Command::Version { client, output } => {
            let output = output.get()?;
            if client {
                cli::version::run(None, output).await?;
            } else {
                match connect().await {
                    Ok(cluster) => cli::version::run(Some(&cluster), output).await?,
                    Err(e) => {
                        // As kubectl version: what the plugin knows, then why the cluster did not answer.
                        cli::version::run(None, output).await?;
                        return Err(e);
                    }
                }
            }
        }
        Command::Lint { file } => return cli::lint::run(&file),
        Command::Convert { file } => return cli::convert::run(&file),
        Command::Get {
            name,
            watch,
            no_color,
            timeout_seconds,
            output,
            ..
        } => {
            let opts = cli::get::GetOptions {
                watch,
                no_color,
                output: output.get()?,
                timeout: timeout_seconds.map(std::time::Duration::from_secs),
            };
            cli::get::run(&connect().await?, &name, &opts).await?;
        }
        Command::List {
            all_namespaces,
            watch,
            no_color,
            output,
            ..
        } => {
            let output = output.get()?;
            cli::list::run(&connect().await?, all_namespaces, watch, output, no_color).await?;
        }
        Command::Status {
            name,
            timeout,
            watch,
            output,
        } => {
            let timeout = cli::status::parse_timeout(&timeout)?;
            let output = output.get()?;
            cli::status::run(&connect().await?, &name, timeout, watch, output).await?;
        }
        Command::Promote { name, full } => {
            cli::actions::promote(&connect().await?, &name, full).await?
        }
        Command::Abort { name } => cli::actions::abort(&connect().await?, &name).await?,
        Command::Retry { args } => {
            let name = match args.as_slice() {
                [name] => name.clone(),
                [kind, name] if ["rollout", "rollouts", "ro"].contains(&kind.as_str()) => {
                    name.clone()
                }
                _ => {
                    return Err(CliError::Usage(
                        "usage: kubectl aviary retry [rollout] NAME".into(),
                    ));
                }
            };
            cli::actions::retry(&connect().await?, &name).await?
        }
        Command::Pause { name } => cli::actions::set_paused(&connect().await?, &name, true).await?,
        Command::Resume { name } => {
            cli::actions::set_paused(&connect().await?, &name, false).await?
        }
        Command::Restart { name, in_ } => {
            let after = in_.as_deref().map(parse_duration).transpose()?;
            cli::actions::restart(&connect().await?, &name, after).await?
        }
        Command::Set {
            what: SetCommand::Image { name, images },
        } => cli::actions::set_image(&connect().await?, &name, &images).await?,
        Command::Migrate { name } => cli::migrate::run(&connect().await?, &name).await?,
        Command::Undo { name, to_revision } => {
            cli::history::run_undo(&connect().await?, &name, to_revision).await?
        }
        Command::History { name, output } => {
            let output = output.get()?;
            cli::history::run_history(&connect().await?, &name, output).await?
        }
    }
    Ok(cli::errors::exit::OK)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                cli::errors::exit::USAGE
            } else {
                cli::errors::exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {}", e.one_line());
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kubectl_style_invocations_parse() {
        for args in [
            vec![
                "kubectl-aviary",
                "get",
                "rollout",
                "bff",
                "-n",
                "platform-production",
                "--watch",
            ],
            vec!["kubectl-aviary", "undo", "bff", "--to-revision=3"],
            vec!["kubectl-aviary", "history", "bff"],
            vec!["kubectl-aviary", "list", "rollouts", "-A", "-o", "json"],
            vec!["kubectl-aviary", "status", "bff", "-t", "5m"],
            vec!["kubectl-aviary", "retry", "rollout", "bff"],
            vec![
                "kubectl-aviary",
                "set",
                "image",
                "bff",
                "bff=img:2",
                "--context",
                "prod",
            ],
            vec![
                "kubectl-aviary",
                "--kubeconfig",
                "/k",
                "promote",
                "bff",
                "--full",
            ],
        ] {
            assert!(Cli::try_parse_from(&args).is_ok(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["kubectl-aviary", "get", "deployment", "x"]).is_err());
    }
}
