//! Command layer: runs the pipeline stages for each subcommand, with anyhow context and exit codes.

pub mod apply;
pub mod plan;
pub mod rotate;
pub mod validate;
pub mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::cloud::aws::{AwsCloud, AwsOptions};
use crate::cloud::Cloud;
use crate::config::{self, Fleet};
use crate::desired::{self, AwsContext, Desired, OFFLINE_ACCOUNT_ID};
use crate::observed;
use crate::plan::Plan;

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    /// `--detailed-exitcode` and there are changes.
    Changes = 2,
}

/// Options shared by every command.
#[derive(Debug, Clone)]
pub struct Globals {
    pub file: PathBuf,
    pub profile: Option<String>,
    pub region: Option<String>,
    pub color: bool,
    pub quiet: bool,
    pub verbose: u8,
}

impl Globals {
    /// Colour on stdout only on a terminal.
    pub fn stdout_color(&self) -> bool {
        self.color && std::io::stdout().is_terminal()
    }
}

/// Options of commands that read the account.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub parallelism: usize,
    pub prune: bool,
    pub replace_missing_keys: bool,
    pub stats: bool,
}

/// Logs go to stderr; RUST_LOG overrides -v/-q.
pub fn init_logging(g: &Globals) {
    let default = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 => "warn",
            1 => "provision=info",
            _ => "provision=debug",
        }
    };
    // rumqttc warns about every refused PUBACK / SUBACK; verify reports those itself.
    let default = format!("{default},rumqttc=error");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(g.color && std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Print an error and its causes, once, on stderr.
pub fn print_error(err: &anyhow::Error) {
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let label = console::style("error:").red().bold().force_styling(color);
    eprintln!("{label} {err}");
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        // Diagnostics print as their own list; avoid repeating a cause already in the message.
        if err.to_string().contains(&text) {
            continue;
        }
        eprintln!("  caused by: {text}");
    }
}

/// Load and validate the fleet file.
pub fn load_fleet(g: &Globals) -> Result<Fleet> {
    config::load(&g.file).with_context(|| format!("{} is not a valid fleet file", g.file.display()))
}

/// The region: --region, else the file's `region:`, else the SDK chain (env, profile). Offline.
pub async fn resolve_region(g: &Globals, fleet: &Fleet) -> Result<String> {
    match (&g.region, &fleet.region) {
        (Some(flag), Some(file)) if flag != file => bail!(
            "--region {flag} disagrees with `region: {file}` in {}; the fleet file pins its region",
            g.file.display()
        ),
        (Some(r), _) | (None, Some(r)) => Ok(r.clone()),
        (None, None) => crate::cloud::aws::resolve_region(g.profile.as_deref())
            .await
            .with_context(|| {
                format!(
                    "no AWS region: give --region, set AWS_REGION, or pin `region:` in {}",
                    g.file.display()
                )
            }),
    }
}

/// Everything checkable offline: the file, then every template rendered (placeholder account id).
pub async fn validate_offline(g: &Globals) -> Result<(Fleet, String, Desired)> {
    let fleet = load_fleet(g)?;
    let region = resolve_region(g, &fleet).await?;
    let desired = desired::render(&fleet, &AwsContext::new(&region, OFFLINE_ACCOUNT_ID))
        .map_err(config::ConfigError::Invalid)
        .with_context(|| format!("the policies of {} fail validation", g.file.display()))?;
    if !g.quiet {
        for w in &desired.warnings {
            eprintln!("warning: {w} (accepted: least_privilege is warn)");
        }
    }
    Ok((fleet, region, desired))
}

/// Connect to AWS (after everything offline has been validated).
pub async fn connect(g: &Globals, region: &str) -> Result<AwsCloud> {
    let opts = AwsOptions {
        profile: g.profile.clone(),
        region: Some(region.to_string()),
        ..Default::default()
    };
    AwsCloud::connect(&opts)
        .await
        .context("cannot set up the AWS clients")
}

/// Read the account and diff: the plan, with the desired state it was made from.
pub async fn make_plan<C: Cloud>(
    g: &Globals,
    cloud: &C,
    fleet: &Fleet,
    region: &str,
    read: &ReadOptions,
) -> Result<(Desired, crate::observed::Observed, Plan)> {
    let account = cloud
        .account()
        .await
        .context("cannot identify the AWS account (check the credentials)")?;
    let desired = desired::render(fleet, &AwsContext::new(region, &account.account_id))
        .map_err(config::ConfigError::Invalid)
        .context("the policy templates do not render for this account")?;
    let bar = progress_bar(g, desired.identities.len() as u64, "reading");
    let observed = observed::observe(cloud, &desired, read.parallelism, read.prune, &|| {
        bar.inc(1)
    })
    .await
    .with_context(|| format!("cannot read the state of fleet {} from AWS", fleet.name))?;
    bar.finish_and_clear();
    let plan = crate::plan::diff(
        &desired,
        &observed,
        crate::plan::DiffOptions {
            replace_missing_keys: read.replace_missing_keys,
            prune: read.prune,
        },
    );
    Ok((desired, observed, plan))
}

/// A progress bar on stderr (hidden when stderr is not a terminal, or with -q).
pub fn progress_bar(g: &Globals, len: u64, phase: &str) -> indicatif::ProgressBar {
    if g.quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>9} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(phase.to_string());
    bar
}

/// Print per-API call counts and the floor they imply, on stderr.
pub fn print_stats(cloud: &AwsCloud, elapsed: std::time::Duration) {
    let stats = cloud.stats();
    eprintln!("API calls (rate = paced requests/s):");
    for (api, s) in &stats.apis {
        eprintln!(
            "  {api:<26} {:>6} calls  {:>4} throttled  at {:>6.1}/s",
            s.calls, s.throttled, s.rate
        );
    }
    let floor = stats.floor();
    eprintln!(
        "  total {} calls, {} throttled; floor {:.2}s, took {:.2}s ({:.2}x the floor)",
        stats.total_calls(),
        stats.total_throttled(),
        floor.as_secs_f64(),
        elapsed.as_secs_f64(),
        if floor.as_secs_f64() > 0.0 {
            elapsed.as_secs_f64() / floor.as_secs_f64()
        } else {
            0.0
        }
    );
}

/// A Tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
