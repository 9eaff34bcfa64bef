//! `provision plan`: read the account, diff, print the plan (text or JSON) on stdout.

use anyhow::{Context, Result};

use super::{
    connect, make_plan, print_stats, runtime, validate_offline, Exit, Globals, ReadOptions,
};
use crate::plan;

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub read: ReadOptions,
    pub json: bool,
    pub detailed_exitcode: bool,
    /// Save the plan here (for `provision apply FILE`).
    pub out: Option<std::path::PathBuf>,
}

pub fn run(g: &Globals, opts: &PlanOptions) -> Result<Exit> {
    runtime()?.block_on(async {
        let started = std::time::Instant::now();
        let (fleet, region, _) = validate_offline(g).await?;
        let cloud = connect(g, &region, &fleet, &opts.read).await?;
        let (_, _, plan) = make_plan(g, &cloud, &fleet, &region, &opts.read).await?;
        if opts.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", plan::render_text(&plan, g.stdout_color()));
        }
        if let Some(out) = &opts.out {
            let text = serde_json::to_string_pretty(&plan)?;
            std::fs::write(out, text + "\n")
                .with_context(|| format!("cannot save the plan to {}", out.display()))?;
            if !g.quiet {
                eprintln!(
                    "Saved the plan to {}: `provision apply {}` applies exactly this plan, and refuses if the account or {} changed since.",
                    out.display(),
                    out.display(),
                    g.file.display()
                );
            }
        }
        if opts.read.stats {
            print_stats(&cloud, started.elapsed());
        }
        Ok(if !plan.problems.is_empty() {
            Exit::Failure
        } else if opts.detailed_exitcode && plan.has_changes() {
            Exit::Changes
        } else {
            Exit::Success
        })
    })
}
