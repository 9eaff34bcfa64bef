//! Command-line interface: the only module that knows clap. Parses arguments and dispatches to [`crate::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::{self, Exit, Globals};

const EXIT_CODES: &str = "\
Exit codes:
  0  success; with --detailed-exitcode: no changes
  1  error (invalid input, AWS error, a station that failed or needs attention)
  2  with --detailed-exitcode: success, and there are changes (drift)";

#[derive(Debug, Parser)]
#[command(
    name = "provision",
    version,
    about = "Infrastructure as code for AWS IoT Core fleets: things, certificates and least-privilege policies from stations.yaml",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// The fleet file.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        default_value = "stations.yaml",
        env = "PROVISION_FILE"
    )]
    file: PathBuf,
    /// AWS profile (from ~/.aws/config and ~/.aws/credentials).
    #[arg(long, global = true, env = "AWS_PROFILE")]
    profile: Option<String>,
    /// AWS region (overrides the environment; must agree with `region:` in the fleet file).
    #[arg(long, global = true)]
    region: Option<String>,
    /// No colours (also when NO_COLOR is set or stdout is not a terminal).
    #[arg(long, global = true)]
    no_color: bool,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a starter stations.yaml and policy templates (never overwrites).
    Init {
        /// Where to write them.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print the JSON Schema of stations.yaml (for editors: yaml-language-server).
    Schema {
        /// Print the schema of the JSON plan format instead (plan --json, plan -o).
        #[arg(long)]
        plan: bool,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Check the fleet file and render every policy, offline: no AWS call.
    Validate,
    /// Show what apply would change in the account.
    #[command(after_help = EXIT_CODES)]
    Plan(PlanArgs),
    /// Make the account match the fleet file.
    #[command(after_help = EXIT_CODES)]
    Apply(ApplyArgs),
    /// Issue new certificates for stations and retire the old ones (old keys are archived).
    Rotate(RotateArgs),
    /// Connect as each station over MQTT 5 with mutual TLS: prove the round trip and the confinement.
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
}

const VERIFY_HELP: &str = "\
Probes per station: connect (client id = station id), uplink (QoS 1 publish received by the
platform), downlink (platform publish received by the station), and confinement: publishing
to another station's uplink, subscribing to its downlink and connecting with its client id
must be refused (reason code 135) or never delivered.

Exit codes:
  0  every probe of every station passed
  1  a probe failed, or an error (invalid input, endpoint unreachable)";

#[derive(Debug, Args)]
struct MqttArgs {
    /// Connect to this host instead of the fleet's endpoint (default: the custom domain when
    /// configured, else DescribeEndpoint iot:Data-ATS).
    #[arg(long, value_name = "HOST")]
    endpoint: Option<String>,
    /// MQTT over TLS port: 8883, or 443 (then with ALPN x-amzn-mqtt-ca).
    #[arg(long, default_value_t = 8883)]
    port: u16,
    /// Check the server's certificate against this CA file (default: Amazon Root CA 1).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Connect to ADDRESS for HOST:PORT, keeping SNI and the certificate check for HOST (like curl).
    #[arg(long, value_name = "HOST:PORT:ADDRESS")]
    resolve: Vec<String>,
    /// Seconds each probe may take (connect, acknowledgement, delivery).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    timeout: f64,
    /// Seconds to watch for a forbidden message before concluding it was never delivered.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    settle: f64,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Verify only these stations (repeatable, or comma-separated); default: every station.
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    station: Vec<String>,
    #[command(flatten)]
    mqtt: MqttArgs,
    /// Stations verified at once.
    #[arg(long, default_value_t = 8)]
    parallelism: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn verify_options(
    m: MqttArgs,
    stations: Vec<String>,
    parallelism: usize,
    json: bool,
) -> anyhow::Result<commands::verify::VerifyOptions> {
    let secs = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 && v <= 3600.0 {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(anyhow::anyhow!(
                "--{name} {v}: expected a number of seconds between 0 and 3600"
            ))
        }
    };
    Ok(commands::verify::VerifyOptions {
        stations,
        endpoint: m.endpoint,
        port: m.port,
        ca_file: m.ca_file,
        resolve: m.resolve,
        timeout: secs("timeout", m.timeout)?,
        settle: secs("settle", m.settle)?,
        parallelism: parallelism.max(1),
        json,
    })
}

#[derive(Debug, Args)]
struct RotateArgs {
    /// Station to rotate (repeatable).
    #[arg(long = "station", required = true, value_name = "ID")]
    stations: Vec<String>,
    #[command(flatten)]
    apply: ApplyArgs,
}

#[derive(Debug, Args)]
struct ReadArgs {
    /// Identities read or changed at once (each API is paced at its quota separately; enough
    /// must be in flight to keep the fastest quota busy at AWS's latency).
    #[arg(long, default_value_t = 128)]
    parallelism: usize,
    /// Issue a new certificate for a station whose private key is missing locally,
    /// deactivating the old one (off: such a station is reported as an error).
    #[arg(long)]
    replace_missing_keys: bool,
    /// Print API calls per API and the time floor they imply (stderr).
    #[arg(long)]
    stats: bool,
    /// Delete stations this fleet owns that are no longer in the file (their keys are archived).
    #[arg(long, conflicts_with = "targets")]
    prune: bool,
    /// Only this station or platform (repeatable); the others are neither read nor changed.
    #[arg(long = "target", value_name = "ID")]
    targets: Vec<String>,
    /// Multiply AWS's default API quotas (for an account with raised quotas, or a shared one).
    #[arg(long, value_name = "FACTOR")]
    rate_scale: Option<f64>,
    /// Requests per second for one API, e.g. --rate CreateThing=200 (repeatable).
    #[arg(long = "rate", value_name = "API=N", value_parser = parse_rate)]
    rates: Vec<(String, f64)>,
    /// Seconds a throttled or failing call is retried before its station fails (default 600).
    #[arg(long, value_name = "SECONDS")]
    retry_deadline: Option<u64>,
}

fn parse_rate(s: &str) -> Result<(String, f64), String> {
    let (api, n) = s
        .split_once('=')
        .ok_or_else(|| format!("expected API=N (requests per second), got {s:?}"))?;
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{n:?} is not a number of requests per second"))?;
    if !(n > 0.0 && n.is_finite()) {
        return Err(format!("the rate for {api} must be positive"));
    }
    Ok((api.to_string(), n))
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    read: ReadArgs,
    /// Print the plan as JSON (docs/plan-format.md).
    #[arg(long)]
    json: bool,
    /// Exit 2 when there are changes, 0 when none, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Save the plan as JSON to FILE; `provision apply FILE` applies exactly it.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    /// A plan saved with `provision plan -o FILE`: apply exactly it (refused if the account or
    /// the fleet file changed since).
    #[arg(value_name = "PLAN")]
    plan: Option<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// Apply without asking for confirmation.
    #[arg(long)]
    auto_approve: bool,
    /// Print the plan and the result as JSON.
    #[arg(long)]
    json: bool,
    /// After applying, verify the stations that changed over MQTT (see `provision verify`).
    #[arg(long)]
    verify: bool,
    /// Seconds to wait for ACM to issue the custom domain's certificate (DNS validation);
    /// an apply that stops waiting continues the wait next time.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    wait_timeout: u64,
    #[command(flatten)]
    mqtt: MqttArgs,
}

/// Parse the command line and run the command.
pub fn run() -> anyhow::Result<Exit> {
    let cli = Cli::parse();
    let g = cli.globals;
    let globals = Globals {
        file: g.file,
        profile: g.profile,
        region: g.region,
        color: !g.no_color && std::env::var_os("NO_COLOR").is_none(),
        quiet: g.quiet,
        verbose: g.verbose,
    };
    commands::init_logging(&globals);
    let read = |r: ReadArgs| commands::ReadOptions {
        parallelism: r.parallelism,
        replace_missing_keys: r.replace_missing_keys,
        stats: r.stats,
        prune: r.prune,
        rate_scale: r.rate_scale,
        rates: r.rates,
        retry_deadline: r.retry_deadline,
        targets: r.targets,
    };
    match cli.command {
        Command::Init { dir } => commands::init::run(&dir),
        Command::Schema { plan } => {
            let schema = if plan {
                crate::plan::json_schema()
            } else {
                crate::config::json_schema()
            };
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(Exit::Success)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "provision",
                &mut std::io::stdout(),
            );
            Ok(Exit::Success)
        }
        Command::Validate => commands::validate::run(&globals),
        Command::Plan(a) => commands::plan::run(
            &globals,
            &commands::plan::PlanOptions {
                read: read(a.read),
                json: a.json,
                detailed_exitcode: a.detailed_exitcode,
                out: a.out,
            },
        ),
        Command::Apply(a) => commands::apply::run(
            &globals,
            &commands::apply::ApplyOptions {
                read: read(a.read),
                auto_approve: a.auto_approve,
                json: a.json,
                verify: a
                    .verify
                    .then(|| verify_options(a.mqtt, Vec::new(), 8, a.json))
                    .transpose()?,
                wait_timeout: std::time::Duration::from_secs(a.wait_timeout),
                saved: a.plan,
            },
        ),
        Command::Rotate(r) if r.apply.plan.is_some() => {
            anyhow::bail!("rotate takes no plan file: it plans the rotation itself")
        }
        Command::Rotate(r) => commands::rotate::run(
            &globals,
            &commands::rotate::RotateOptions {
                stations: r.stations,
                apply: commands::apply::ApplyOptions {
                    read: read(r.apply.read),
                    auto_approve: r.apply.auto_approve,
                    json: r.apply.json,
                    saved: None,
                    verify: r
                        .apply
                        .verify
                        .then(|| verify_options(r.apply.mqtt, Vec::new(), 8, r.apply.json))
                        .transpose()?,
                    wait_timeout: std::time::Duration::from_secs(r.apply.wait_timeout),
                },
            },
        ),
        Command::Verify(a) => commands::verify::run(
            &globals,
            &verify_options(a.mqtt, a.station, a.parallelism, a.json)?,
        ),
    }
}
