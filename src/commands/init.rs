//! `provision init`: write a starter fleet file and policy templates, never overwriting anything.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Exit;

const STATIONS: &str = r#"# A fleet for provision: see `provision schema` for every key, and README.md.
fleet: my-fleet                 # name of this fleet; marks what provision owns
# region: eu-west-1             # optional: pin the fleet's region
certificates:
  dir: certs                    # relative to this file; keys are written here once
  # mode: csr                   # generate keys locally and have AWS IoT sign a CSR
policies:
  station: templates/station-policy.json.j2
  platform: templates/platform-policy.json.j2
topics:                         # minijinja strings, available to policy templates
  up: "device/station/up/{{ station.id }}"
  down: "device/station/down/{{ station.id }}"
platform:
  id: stmain                    # the SaaS client: subscribes to every uplink, publishes downlinks
stations:
  - id: st000
    attributes: { site: plant-a }
  - id: st001
"#;

const STATION_TEMPLATE: &str = include_str!("../../templates/station-policy.json.j2");
const PLATFORM_TEMPLATE: &str = include_str!("../../templates/platform-policy.json.j2");

/// Write the starter files into `dir`; refuse if any exists.
pub fn run(dir: &Path) -> Result<Exit> {
    let files: [(PathBuf, &str); 3] = [
        (dir.join("stations.yaml"), STATIONS),
        (
            dir.join("templates/station-policy.json.j2"),
            STATION_TEMPLATE,
        ),
        (
            dir.join("templates/platform-policy.json.j2"),
            PLATFORM_TEMPLATE,
        ),
    ];
    for (path, _) in &files {
        if path.exists() {
            bail!(
                "{} already exists; provision init never overwrites files (pick another --dir)",
                path.display()
            );
        }
    }
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!("next: edit stations.yaml, then `provision validate` and `provision plan`");
    Ok(Exit::Success)
}
