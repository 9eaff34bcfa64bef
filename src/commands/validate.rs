//! `provision validate`: the fleet file and every rendered policy, checked offline.

use anyhow::Result;

use super::{runtime, validate_offline, Exit, Globals};

pub fn run(g: &Globals) -> Result<Exit> {
    let (fleet, region, desired) = runtime()?.block_on(validate_offline(g))?;
    if !g.quiet {
        eprintln!(
            "{} is valid: fleet {}, {} stations and platform {}, {} policies rendered for {region} ({}).",
            g.file.display(),
            fleet.name,
            fleet.stations.len(),
            fleet.platform.id,
            desired.identities.len(),
            desired.aws.partition,
        );
    }
    Ok(Exit::Success)
}
