//! `provision rotate --station ID…`: issue new certificates for in-sync stations and retire the old ones.

use anyhow::{bail, Result};

use super::apply::{confirm_and_execute, prepare_local, ApplyOptions};
use super::{connect, make_plan, print_stats, runtime, validate_offline, Exit, Globals};
use crate::plan::{self, IdentityPlan};

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
        let exit = confirm_and_execute(g, &cloud, &rotation, &opts.apply).await?;
        if opts.apply.read.stats {
            print_stats(&cloud, started.elapsed());
        }
        Ok(exit)
    })
}
