//! Command layer: runs the pipeline stages for each subcommand, with anyhow context and exit codes.

pub mod apply;
pub mod init;
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
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Scale of the default API quotas (overrides `limits.rate_scale`).
    pub rate_scale: Option<f64>,
    /// Per-API rates (override `limits.rates`).
    pub rates: Vec<(String, f64)>,
    /// Seconds a throttled call is retried (overrides `limits.retry_deadline_seconds`).
    pub retry_deadline: Option<u64>,
    /// Only these identities (`--target`); empty: all.
    pub targets: Vec<String>,
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
        .with_timer(tracing_subscriber::fmt::time::uptime())
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

/// `--target` ids must name identities of the fleet (checked before any API call).
pub fn check_targets(g: &Globals, fleet: &Fleet, read: &ReadOptions) -> Result<()> {
    for t in &read.targets {
        if !fleet.identities().any(|i| &i.id == t) {
            bail!(
                "--target {t}: there is no station or platform {t} in {}",
                g.file.display()
            );
        }
    }
    Ok(())
}

/// Connect to AWS (after everything offline has been validated), with the fleet's rate limits
/// and the command line's overrides.
pub async fn connect(
    g: &Globals,
    region: &str,
    fleet: &Fleet,
    read: &ReadOptions,
) -> Result<AwsCloud> {
    check_targets(g, fleet, read)?;
    let mut rates = fleet.limits.rates.clone();
    for (api, rate) in &read.rates {
        if !crate::cloud::limiter::DEFAULT_RATES
            .iter()
            .any(|(k, _)| k == api)
        {
            bail!("--rate {api}={rate}: {api} is not an API provision calls");
        }
        rates.insert(api.clone(), *rate);
    }
    let opts = AwsOptions {
        profile: g.profile.clone(),
        region: Some(region.to_string()),
        rate_scale: read.rate_scale.or(fleet.limits.rate_scale),
        rates,
        retry_deadline: read
            .retry_deadline
            .or(fleet.limits.retry_deadline_seconds)
            .map(std::time::Duration::from_secs),
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
    let mut desired = desired::render(fleet, &AwsContext::new(region, &account.account_id))
        .map_err(config::ConfigError::Invalid)
        .context("the policy templates do not render for this account")?;
    if !read.targets.is_empty() {
        desired.identities.retain(|d| read.targets.contains(&d.id));
    }
    tracing::info!(account = %account.account_id, "reading the account");
    let bar = progress(g, desired.identities.len() as u64, "reading");
    let mut observed =
        observed::observe(cloud, &desired, read.parallelism, read.prune, &|| bar.inc())
            .await
            .with_context(|| format!("cannot read the state of fleet {} from AWS", fleet.name))?;
    bar.finish();
    if !read.targets.is_empty() {
        // Other stations are out of scope, not removed.
        observed.orphans.clear();
    } else {
        // The custom domain is in scope of whole-fleet plans only.
        observed.domain = crate::domain::observe(cloud, &fleet.name, fleet.domain.as_ref(), read.prune)
            .await
            .with_context(|| match &fleet.domain {
                Some(d) => format!(
                    "cannot read the state of custom domain {} (ACM certificate, Route 53 zone {}, IoT domain configuration {}) from AWS",
                    d.name,
                    match &d.zone {
                        config::ZoneRef::Name(n) => n,
                        config::ZoneRef::Id(i) => i,
                    },
                    d.configuration
                ),
                None => format!("cannot look for custom domains fleet {} set up earlier (ACM certificates tagged provision_fleet)", fleet.name),
            })?;
    }
    tracing::info!("read {} identities; diffing", desired.identities.len());
    let mut plan = crate::plan::diff(
        &desired,
        &observed,
        crate::plan::DiffOptions {
            replace_missing_keys: read.replace_missing_keys,
            prune: read.prune,
        },
    );
    plan.scope.targets = read.targets.clone();
    plan.fingerprint.file = config::fingerprint(fleet)
        .with_context(|| format!("cannot read {} again", g.file.display()))?;
    Ok((desired, observed, plan))
}

/// Progress of one phase on stderr: an indicatif bar on a terminal; on anything else (CI logs)
/// a plain line every few seconds while the phase lasts; nothing with -q.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: Option<std::sync::Arc<Plain>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

struct Plain {
    phase: String,
    total: u64,
    done: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
    printed: std::sync::atomic::AtomicBool,
}

impl Plain {
    fn line(&self) -> String {
        let done = self.done.load(std::sync::atomic::Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let eta = if rate > 0.0 {
            format!(
                ", eta {:.0}s",
                (self.total.saturating_sub(done)) as f64 / rate
            )
        } else {
            String::new()
        };
        format!(
            "provision: {} {done}/{} ({:.0}%), {rate:.1}/s, {secs:.0}s elapsed{eta}",
            self.phase,
            self.total,
            if self.total > 0 {
                done as f64 * 100.0 / self.total as f64
            } else {
                100.0
            }
        )
    }
}

impl Progress {
    pub fn inc(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        if let Some(p) = &self.plain {
            p.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn finish(self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some(t) = &self.ticker {
            t.abort();
        }
        if let Some(p) = &self.plain {
            if p.printed.load(std::sync::atomic::Ordering::Relaxed) {
                eprintln!("{} (done)", p.line());
            }
        }
    }
}

/// Seconds between plain progress lines (`PROVISION_PROGRESS_INTERVAL`, default 10).
fn plain_interval() -> std::time::Duration {
    let secs = std::env::var("PROVISION_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(10.0);
    std::time::Duration::from_secs_f64(secs)
}

/// Start showing progress for a phase of `len` items (call inside the runtime).
pub fn progress(g: &Globals, len: u64, phase: &str) -> Progress {
    if g.quiet || len == 0 {
        return Progress {
            bar: None,
            plain: None,
            ticker: None,
        };
    }
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>9} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(phase.to_string());
        return Progress {
            bar: Some(bar),
            plain: None,
            ticker: None,
        };
    }
    let plain = std::sync::Arc::new(Plain {
        phase: phase.to_string(),
        total: len,
        done: std::sync::atomic::AtomicU64::new(0),
        started: std::time::Instant::now(),
        printed: std::sync::atomic::AtomicBool::new(false),
    });
    let every = plain_interval();
    let p = plain.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            eprintln!("{}", p.line());
            p.printed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    Progress {
        bar: None,
        plain: Some(plain),
        ticker: Some(ticker),
    }
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
