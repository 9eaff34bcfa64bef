//! `provision apply`: plan, confirm, execute the plan, report per station.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};

use super::{
    connect, make_plan, print_stats, progress, runtime, validate_offline, Exit, Globals,
    ReadOptions,
};
use crate::apply;
use crate::certstore;
use crate::cloud::aws::AwsCloud;
use crate::config::Fleet;
use crate::desired::{Desired, Role};
use crate::plan::{self, Plan};

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub read: ReadOptions,
    pub auto_approve: bool,
    pub json: bool,
    /// `--verify`: after applying, verify the stations that changed.
    pub verify: Option<super::verify::VerifyOptions>,
    /// How long apply waits for ACM to issue the custom domain's certificate.
    pub wait_timeout: std::time::Duration,
    /// A plan saved by `plan -o`, applied exactly.
    pub saved: Option<std::path::PathBuf>,
}

pub fn run(g: &Globals, opts: &ApplyOptions) -> Result<Exit> {
    runtime()?.block_on(async {
        let started = std::time::Instant::now();
        let (fleet, region, _) = validate_offline(g).await?;
        if let Some(path) = &opts.saved {
            return apply_saved(g, &fleet, &region, path, opts).await;
        }
        prepare_local(&fleet, opts.auto_approve)?;
        let cloud = connect(g, &region, &fleet, &opts.read).await?;
        let (desired, _, plan) = make_plan(g, &cloud, &fleet, &region, &opts.read).await?;
        let exit = execute(g, &cloud, &plan, opts, Some((&fleet, &desired))).await?;
        if opts.read.stats {
            print_stats(&cloud, started.elapsed());
        }
        Ok(exit)
    })
}

/// Apply a saved plan exactly, after proving that neither the file nor the account changed.
async fn apply_saved(
    g: &Globals,
    fleet: &Fleet,
    region: &str,
    path: &std::path::Path,
    opts: &ApplyOptions,
) -> Result<Exit> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the saved plan {}", path.display()))?;
    let saved: Plan = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a plan saved by `provision plan -o`",
            path.display()
        )
    })?;
    if saved.format_version != plan::FORMAT_VERSION {
        bail!(
            "{} has plan format version {}; this provision reads version {}",
            path.display(),
            saved.format_version,
            plan::FORMAT_VERSION
        );
    }
    let r = &opts.read;
    if !r.targets.is_empty() || r.prune || r.replace_missing_keys {
        bail!("--target, --prune and --replace-missing-keys come from the saved plan {}; give them to `provision plan`", path.display());
    }
    if saved.fleet != fleet.name || saved.region != region {
        bail!(
            "{} was made for fleet {} in {}, not fleet {} in {region}",
            path.display(),
            saved.fleet,
            saved.region,
            fleet.name
        );
    }
    let now = crate::config::fingerprint(fleet)
        .with_context(|| format!("cannot read {}", g.file.display()))?;
    if now != saved.fingerprint.file {
        bail!(
            "{} or its templates changed since {} was made; nothing was changed. Run `provision plan -o {}` again",
            g.file.display(),
            path.display(),
            path.display()
        );
    }
    // The plan was the approval: no question, as with Terraform's saved plans.
    prepare_local(fleet, true)?;
    let read = ReadOptions {
        targets: saved.scope.targets.clone(),
        prune: saved.scope.prune,
        replace_missing_keys: saved.scope.replace_missing_keys,
        ..r.clone()
    };
    let cloud = connect(g, region, fleet, &read).await?;
    let (desired, _, fresh) = make_plan(g, &cloud, fleet, region, &read).await?;
    if fresh.account_id != saved.account_id
        || fresh.fingerprint.account != saved.fingerprint.account
    {
        bail!(
            "the account changed since {} was made (what plan read is different now); nothing was changed. Run `provision plan -o {}` again",
            path.display(),
            path.display()
        );
    }
    let approved = ApplyOptions {
        auto_approve: true,
        ..opts.clone()
    };
    execute(g, &cloud, &saved, &approved, Some((fleet, &desired))).await
}

/// Everything local that must hold before the first API call of a changing command.
pub fn prepare_local(fleet: &Fleet, auto_approve: bool) -> Result<()> {
    if !auto_approve && !std::io::stdin().is_terminal() {
        bail!("this command asks for confirmation, but standard input is not a terminal: review the plan with `provision plan`, then run it again with --auto-approve");
    }
    // The keys must have somewhere to go.
    certstore::ensure_writable(&fleet.certificates_dir).with_context(|| {
        format!(
            "the certificates directory {} is not writable; nothing was changed",
            fleet.certificates_dir.display()
        )
    })?;
    for moved in certstore::archive_leftovers(&fleet.certificates_dir)
        .context("cannot archive key directories left by an interrupted apply")?
    {
        eprintln!(
            "note: an interrupted apply left keys of a never-activated certificate; moved them to {}",
            moved.display()
        );
    }
    Ok(())
}

/// Print the plan, ask (unless --auto-approve), execute it and report. Never re-diffs.
pub async fn confirm_and_execute(
    g: &Globals,
    cloud: &AwsCloud,
    plan: &Plan,
    opts: &ApplyOptions,
) -> Result<Exit> {
    execute(g, cloud, plan, opts, None).await
}

/// [`confirm_and_execute`], then with `opts.verify` and the fleet: verify what changed.
async fn execute(
    g: &Globals,
    cloud: &AwsCloud,
    plan: &Plan,
    opts: &ApplyOptions,
    fleet: Option<(&Fleet, &Desired)>,
) -> Result<Exit> {
    if !opts.json {
        print!("{}", plan::render_text(plan, g.stdout_color()));
    }
    if !plan.has_changes() {
        if let Some((fleet, _)) = fleet {
            if plan.problems.is_empty() {
                write_endpoint(g, cloud, plan, fleet).await?;
            }
        }
        if opts.verify.is_some() && !g.quiet {
            eprintln!("Nothing changed, so nothing to verify (run `provision verify` to check every station).");
        }
        if opts.json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"format_version": plan::FORMAT_VERSION, "plan": plan, "result": null})
                )?
            );
        }
        return Ok(if plan.problems.is_empty() {
            Exit::Success
        } else {
            Exit::Failure
        });
    }
    if !opts.auto_approve {
        eprint!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            bail!("cancelled; nothing was changed");
        }
    }
    let started = std::time::Instant::now();
    tracing::info!("applying {} actions", plan.action_count());
    let bar = progress(g, plan.changes.len() as u64, "applying");
    // The custom domain's steps run beside the stations' (nothing of theirs depends on it).
    let quiet = g.quiet;
    let on_progress = move |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let wait = crate::domain::apply::WaitOptions {
        timeout: opts.wait_timeout,
        poll: std::time::Duration::from_secs(1),
        max_poll: std::time::Duration::from_secs(10),
        progress_every: std::time::Duration::from_secs(10),
        on_progress: &on_progress,
    };
    let on_done = |_: &apply::IdentityOutcome| bar.inc();
    let (report, (domain_outcomes, domain_summary)) = tokio::join!(
        apply::apply(cloud, plan, opts.read.parallelism, &on_done),
        crate::domain::apply::apply_domains(cloud, &plan.domains, wait)
    );
    bar.finish();
    let failed: Vec<_> = report.failed().collect();
    for f in &failed {
        eprintln!(
            "error: station {}: stopped after {}/{} actions: {}",
            f.id,
            f.done,
            f.total,
            f.error.as_deref().unwrap_or_default()
        );
    }
    let domain_failed: Vec<_> = domain_outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .collect();
    for f in &domain_failed {
        eprintln!(
            "error: domain {}: stopped after {}/{} steps: {}",
            f.name,
            f.done,
            f.total,
            f.error.as_deref().unwrap_or_default()
        );
    }
    if let Some((fleet, _)) = fleet {
        if domain_failed.is_empty() {
            write_endpoint(g, cloud, plan, fleet).await?;
        }
    }
    let mut s = report.summary;
    s.add += domain_summary.add;
    s.change += domain_summary.change;
    s.destroy += domain_summary.destroy;
    // --verify: the stations that changed (all of them when the platform did).
    let verified = match (&opts.verify, fleet) {
        (Some(v), Some((fleet, desired))) if failed.is_empty() && domain_failed.is_empty() => {
            let changed: Vec<String> = if plan.changes.iter().any(|c| c.role == Role::Platform) {
                Vec::new()
            } else {
                plan.changes.iter().map(|c| c.id.clone()).collect()
            };
            let selected = super::verify::select(desired, &changed, g)?;
            Some(super::verify::verify_stations(g, Some(cloud), fleet, desired, selected, v).await?)
        }
        (Some(_), _) => {
            eprintln!("error: not verifying: apply did not finish");
            None
        }
        (None, _) => None,
    };
    if opts.json {
        let mut out = serde_json::json!({"format_version": plan::FORMAT_VERSION, "plan": plan, "result": report, "domains": domain_outcomes});
        if let Some(v) = &verified {
            out["verify"] = serde_json::to_value(v)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if failed.is_empty() && domain_failed.is_empty() {
            println!(
                "\nApply complete! Resources: {} added, {} changed, {} destroyed.",
                s.add, s.change, s.destroy
            );
        } else if domain_failed.is_empty() {
            println!(
                "\nApply incomplete: {} station(s) failed (see errors above; run apply again to finish). Resources: {} added, {} changed, {} destroyed.",
                failed.len(),
                s.add,
                s.change,
                s.destroy
            );
        } else {
            println!(
                "\nApply incomplete: {} station(s) and the custom domain failed (see errors above; run apply again to finish). Resources: {} added, {} changed, {} destroyed.",
                failed.len(),
                s.add,
                s.change,
                s.destroy
            );
        }
        if let Some(v) = &verified {
            println!();
            super::verify::print_report(v, false)?;
        }
    }
    if !g.quiet {
        eprintln!(
            "Stations: {} changed, {} unchanged, {} failed, {} need attention; {:.1}s.",
            report.outcomes.len() - failed.len(),
            plan.unchanged.len(),
            failed.len(),
            plan.problems.len(),
            started.elapsed().as_secs_f64()
        );
    }
    let verify_ok = verified.as_ref().is_none_or(|v| v.passed());
    Ok(
        if failed.is_empty() && domain_failed.is_empty() && plan.problems.is_empty() && verify_ok {
            Exit::Success
        } else {
            Exit::Failure
        },
    )
}

/// Write `<certificates.dir>/endpoint.json`: the host stations should connect to (the custom
/// domain when configured, else the ATS endpoint). No call when the file already holds this
/// account's ATS endpoint and no domain is configured.
async fn write_endpoint(g: &Globals, cloud: &AwsCloud, plan: &Plan, fleet: &Fleet) -> Result<()> {
    use crate::cloud::Cloud;
    use crate::domain::endpoint;
    let dir = &fleet.certificates_dir;
    let ats = match &plan.ats_endpoint {
        Some(a) => a.clone(),
        None => {
            let current = endpoint::read(dir);
            if plan.custom_domain.is_none()
                && current.as_ref().is_some_and(|f| {
                    f.account_id == plan.account_id && f.region == plan.region && f.source == "ats"
                })
            {
                return Ok(());
            }
            cloud
                .describe_endpoint(crate::domain::DATA_ATS)
                .await
                .context("cannot look up the fleet's MQTT endpoint (DescribeEndpoint iot:Data-ATS) for the endpoint file")?
        }
    };
    let file = endpoint::EndpointFile::new(
        &plan.fleet,
        &plan.account_id,
        &plan.region,
        plan.custom_domain.as_deref(),
        &ats,
    );
    let written = endpoint::write(dir, &file)
        .with_context(|| format!("cannot write {}", endpoint::path(dir).display()))?;
    if written && !g.quiet {
        eprintln!(
            "Stations connect to {}:{} (written to {}).",
            file.endpoint,
            file.port,
            endpoint::path(dir).display()
        );
    }
    Ok(())
}
