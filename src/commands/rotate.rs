//! `provision rotate --station ID…`: issue new certificates for in-sync stations and retire the old ones.

use std::io::{BufRead, Write};

use anyhow::{bail, Result};

use super::apply::{confirm_and_execute, prepare_local, ApplyOptions};
use super::verify::VerifyOptions;
use super::{connect, make_plan, print_stats, runtime, validate_offline, Exit, Globals};
use crate::apply;
use crate::cloud::aws::AwsCloud;
use crate::config::Fleet;
use crate::desired::{Desired, Role};
use crate::plan::{self, IdentityPlan, Plan, ROTATION_ISSUE_STEPS};

pub struct RotateOptions {
    pub stations: Vec<String>,
    pub apply: ApplyOptions,
}

pub fn run(g: &Globals, opts: &RotateOptions) -> Result<Exit> {
    runtime()?.block_on(async {
        let started = std::time::Instant::now();
        let (fleet, region, _) = validate_offline(g).await?;
        for id in &opts.stations {
            if !fleet.identities().any(|i| &i.id == id) {
                bail!("station {id} is not in {}", g.file.display());
            }
        }
        prepare_local(&fleet, opts.apply.auto_approve)?;
        let cloud = connect(g, &region, &fleet, &opts.apply.read).await?;
        let (desired, observed, current) =
            make_plan(g, &cloud, &fleet, &region, &opts.apply.read).await?;
        let mut changes = Vec::new();
        for id in &opts.stations {
            if current.changes.iter().any(|c| &c.id == id)
                || current.problems.iter().any(|p| &p.id == id)
            {
                bail!("station {id} does not match the fleet file yet: run `provision apply` (or look at `provision plan`) before rotating its certificate");
            }
            let d = desired
                .identities
                .iter()
                .find(|d| &d.id == id)
                .expect("checked above");
            let actions = plan::rotation(d, &observed.identities[id], desired.key_method)
                .map_err(anyhow::Error::msg)?;
            changes.push(IdentityPlan {
                id: id.clone(),
                role: d.role,
                removal: false,
                actions,
            });
        }
        let rotation = plan::Plan {
            summary: plan::Summary::of(&changes),
            changes,
            unchanged: Vec::new(),
            problems: Vec::new(),
            not_pruned: Vec::new(),
            domains: Vec::new(),
            ..current
        };
        let exit = match &opts.apply.verify {
            None => confirm_and_execute(g, &cloud, &rotation, &opts.apply).await?,
            Some(v) => rotate_verified(g, &cloud, &fleet, &desired, &rotation, opts, v).await?,
        };
        if opts.apply.read.stats {
            print_stats(&cloud, started.elapsed());
        }
        Ok(exit)
    })
}

/// Rotate in two phases: issue and activate the new certificates, prove them over MQTT, and
/// retire the old certificates only of the stations whose new one passed every probe. A station
/// that fails keeps its old certificate ACTIVE (the next `apply` retires it once you accept the
/// new one; its old key is in the archive).
async fn rotate_verified(
    g: &Globals,
    cloud: &AwsCloud,
    fleet: &Fleet,
    desired: &Desired,
    rotation: &Plan,
    opts: &RotateOptions,
    v: &VerifyOptions,
) -> Result<Exit> {
    print!("{}", plan::render_text(rotation, g.stdout_color()));
    if !opts.apply.auto_approve {
        eprint!("\nDo you want to perform these actions (the old certificates are retired only after the new ones pass verify)? Only 'yes' will be accepted: ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            bail!("cancelled; nothing was changed");
        }
    }
    let phase = |issue: bool, ids: &[String]| Plan {
        changes: rotation
            .changes
            .iter()
            .filter(|c| ids.contains(&c.id))
            .map(|c| {
                let split = ROTATION_ISSUE_STEPS.min(c.actions.len());
                IdentityPlan {
                    actions: if issue {
                        c.actions[..split].to_vec()
                    } else {
                        c.actions[split..].to_vec()
                    },
                    ..c.clone()
                }
            })
            .collect(),
        ..rotation.clone()
    };
    let all: Vec<String> = rotation.changes.iter().map(|c| c.id.clone()).collect();
    let issued = apply::apply(
        cloud,
        &phase(true, &all),
        opts.apply.read.parallelism,
        &|_| {},
    )
    .await;
    let mut failed = false;
    for f in issued.failed() {
        failed = true;
        eprintln!(
            "error: station {}: the new certificate was not issued: {}",
            f.id,
            f.error.as_deref().unwrap_or_default()
        );
    }
    let issued_ids: Vec<String> = issued
        .outcomes
        .iter()
        .filter(|o| o.error.is_none())
        .map(|o| o.id.clone())
        .collect();
    // The platform takes part in every station's round trip: rotating it means verifying all.
    let platform_rotated = rotation
        .changes
        .iter()
        .any(|c| c.role == Role::Platform && issued_ids.contains(&c.id));
    let to_verify: Vec<String> = if platform_rotated {
        Vec::new()
    } else {
        issued_ids.clone()
    };
    let selected = super::verify::select(desired, &to_verify, g)?;
    let report =
        match super::verify::verify_stations(g, Some(cloud), fleet, desired, selected, v).await {
            Ok(r) => {
                super::verify::print_report(&r, false)?;
                Some(r)
            }
            Err(e) => {
                eprintln!("error: verify could not run: {e:#}");
                None
            }
        };
    let passed: Vec<String> = match &report {
        None => Vec::new(),
        Some(report) => issued_ids
            .iter()
            .filter(|id| {
                if **id == fleet.platform.id {
                    report.platform.ok && report.stations.iter().all(|s| s.ok)
                } else {
                    report.stations.iter().any(|s| &s.id == *id && s.ok)
                }
            })
            .cloned()
            .collect(),
    };
    for id in issued_ids.iter().filter(|id| !passed.contains(id)) {
        failed = true;
        eprintln!("error: station {id}: its new certificate did not pass verify, so its old certificate stays ACTIVE. Look at the errors above; `provision apply` retires the old certificate once you accept the new one (the old key is in the archive)");
    }
    let retired = apply::apply(
        cloud,
        &phase(false, &passed),
        opts.apply.read.parallelism,
        &|_| {},
    )
    .await;
    for f in retired.failed() {
        failed = true;
        eprintln!(
            "error: station {}: retiring the old certificate failed (run `provision apply` to finish): {}",
            f.id,
            f.error.as_deref().unwrap_or_default()
        );
    }
    println!(
        "\nRotation: {} of {} station(s) rotated and verified; old certificates retired: {}.",
        passed.len(),
        all.len(),
        if passed.is_empty() {
            "none".to_string()
        } else {
            passed.join(", ")
        }
    );
    Ok(if failed { Exit::Failure } else { Exit::Success })
}
