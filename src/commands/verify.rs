//! `provision verify` (and `apply --verify`): find the endpoint, connect as each station over MQTT 5 with mutual TLS, print the report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{connect, runtime, validate_offline, Exit, Globals};
use crate::cloud::Cloud;
use crate::config::Fleet;
use crate::desired::{Desired, Role};
use crate::verify::{self, report, session::Target, Report, Spec, Station};

/// The AWS endpoint type MQTT devices with X.509 certificates connect to.
pub const DATA_ATS: &str = "iot:Data-ATS";

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Station ids to verify; empty = every station.
    pub stations: Vec<String>,
    /// Connect to this host instead of the fleet's endpoint.
    pub endpoint: Option<String>,
    pub port: u16,
    /// Trust anchor for the server's certificate (default Amazon Root CA 1).
    pub ca_file: Option<PathBuf>,
    /// `HOST:PORT:ADDRESS` entries, like curl's --resolve.
    pub resolve: Vec<String>,
    pub timeout: Duration,
    pub settle: Duration,
    pub parallelism: usize,
    pub json: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            stations: Vec::new(),
            endpoint: None,
            port: 8883,
            ca_file: None,
            resolve: Vec::new(),
            timeout: Duration::from_secs(10),
            settle: Duration::from_secs(2),
            parallelism: 8,
            json: false,
        }
    }
}

pub fn run(g: &Globals, opts: &VerifyOptions) -> Result<Exit> {
    runtime()?.block_on(async {
        let (fleet, region, desired) = validate_offline(g).await?;
        let selected = select(&desired, &opts.stations, g)?;
        // The endpoint needs AWS only when neither --endpoint nor a custom domain names it.
        let report = if opts.endpoint.is_some() || custom_domain(&fleet).is_some() {
            verify_stations::<crate::cloud::aws::AwsCloud>(
                g, None, &fleet, &desired, selected, opts,
            )
            .await?
        } else {
            // One DescribeEndpoint call: the fleet's `limits:` apply, no flags to override them.
            let read = super::ReadOptions {
                rate_scale: None,
                rates: Vec::new(),
                retry_deadline: None,
                parallelism: 1,
                prune: false,
                replace_missing_keys: false,
                stats: false,
                targets: Vec::new(),
            };
            let cloud = connect(g, &region, &fleet, &read).await?;
            verify_stations(g, Some(&cloud), &fleet, &desired, selected, opts).await?
        };
        print_report(&report, opts.json)?;
        Ok(if report.passed() {
            Exit::Success
        } else {
            Exit::Failure
        })
    })
}

/// Print the report on stdout, as text or JSON.
pub fn print_report(report: &Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report::render_text(report));
    }
    Ok(())
}

/// The station ids to verify: those asked for (checked against the fleet), else all.
pub fn select(desired: &Desired, asked: &[String], g: &Globals) -> Result<Vec<String>> {
    let stations: Vec<&str> = desired
        .identities
        .iter()
        .filter(|i| i.role == Role::Station)
        .map(|i| i.id.as_str())
        .collect();
    if asked.is_empty() {
        return Ok(stations.iter().map(|s| s.to_string()).collect());
    }
    let mut out = Vec::new();
    for id in asked {
        if !stations.contains(&id.as_str()) {
            let platform = desired
                .identities
                .iter()
                .any(|i| i.role == Role::Platform && &i.id == id);
            if platform {
                bail!("{id} is the platform in {}; verify checks stations (the platform takes part in every station's round trip)", g.file.display());
            }
            bail!(
                "station {id} is not in {} (its stations: {})",
                g.file.display(),
                stations.join(", ")
            );
        }
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    Ok(out)
}

/// The custom MQTT domain devices should connect to, when the fleet file configures one
/// (`domain.name`); otherwise devices use the account's ATS endpoint.
pub fn custom_domain(fleet: &Fleet) -> Option<String> {
    fleet.domain.as_ref().map(|d| d.name.clone())
}

/// Parse `HOST:PORT:ADDRESS` (ADDRESS may be an IPv6 address, bracketed or not).
pub fn parse_resolve(entry: &str) -> Result<(String, u16, String)> {
    let mut parts = entry.splitn(3, ':');
    let (Some(host), Some(port), Some(address)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("--resolve {entry}: expected HOST:PORT:ADDRESS, for example xxxxxxxxxxxxxx-ats.iot.cn-northwest-1.amazonaws.com.cn:8883:127.0.0.1");
    };
    let port: u16 = port
        .parse()
        .with_context(|| format!("--resolve {entry}: {port} is not a port number"))?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || address.is_empty() {
        bail!("--resolve {entry}: expected HOST:PORT:ADDRESS");
    }
    Ok((host.to_ascii_lowercase(), port, address.to_string()))
}

/// Work out the endpoint, then run every probe for `selected`.
pub async fn verify_stations<C: Cloud>(
    g: &Globals,
    cloud: Option<&C>,
    fleet: &Fleet,
    desired: &Desired,
    selected: Vec<String>,
    opts: &VerifyOptions,
) -> Result<Report> {
    let resolves = opts
        .resolve
        .iter()
        .map(|r| parse_resolve(r))
        .collect::<Result<Vec<_>>>()?;
    let roots =
        verify::tls::root_store(opts.ca_file.as_deref()).with_context(|| match &opts.ca_file {
            Some(p) => format!("cannot use {} as the CA file", p.display()),
            None => "cannot load Amazon Root CA 1".into(),
        })?;
    let (host, source) = if let Some(h) = &opts.endpoint {
        (h.clone(), "--endpoint".to_string())
    } else if let Some(d) = custom_domain(fleet) {
        (d, "custom domain".to_string())
    } else {
        let cloud = cloud.expect("a cloud when no endpoint is given");
        let h = cloud.describe_endpoint(DATA_ATS).await.with_context(|| {
            format!("cannot look up the fleet's MQTT endpoint (DescribeEndpoint {DATA_ATS})")
        })?;
        (h, format!("DescribeEndpoint {DATA_ATS}"))
    };
    let host = host.to_ascii_lowercase();
    let mut address = None;
    for (h, p, a) in &resolves {
        if *h == host && *p == opts.port {
            address = Some(a.clone());
        } else if !g.quiet {
            eprintln!(
                "warning: --resolve {h}:{p}:{a} does not match the endpoint {host}:{}; ignored",
                opts.port
            );
        }
    }
    let station = |id: &str| -> Station {
        let i = desired
            .identities
            .iter()
            .find(|i| i.id == id)
            .expect("identity exists");
        Station {
            id: i.id.clone(),
            dir: i.cert_dir.clone(),
            up: i.topics.get("up").cloned().unwrap_or_default(),
            down: i.topics.get("down").cloned().unwrap_or_default(),
        }
    };
    let platform = desired
        .identities
        .iter()
        .find(|i| i.role == Role::Platform)
        .map(|i| station(&i.id))
        .context("the fleet has no platform identity")?;
    let stations: Vec<Station> = desired
        .identities
        .iter()
        .filter(|i| i.role == Role::Station)
        .map(|i| station(&i.id))
        .collect();
    let target = Target {
        host,
        port: opts.port,
        address,
    };
    if !g.quiet {
        eprintln!(
            "Verifying {} station(s) of fleet {} at {} over MQTT 5 with mutual TLS...",
            selected.len(),
            fleet.name,
            target.describe()
        );
    }
    let spec = Spec {
        fleet: fleet.name.clone(),
        target,
        endpoint_source: source,
        roots,
        alpn: opts.port == 443,
        platform,
        stations,
        selected,
        timeout: opts.timeout,
        settle: opts.settle,
        parallelism: opts.parallelism,
    };
    Ok(verify::run(spec).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_entries_parse_like_curl() {
        assert_eq!(
            parse_resolve("Broker.Example.com:8883:127.0.0.1").unwrap(),
            ("broker.example.com".into(), 8883, "127.0.0.1".into())
        );
        assert_eq!(
            parse_resolve("h:443:[::1]").unwrap(),
            ("h".into(), 443, "::1".into())
        );
        assert!(parse_resolve("h:8883").is_err());
        assert!(parse_resolve("h:port:1.2.3.4").is_err());
    }
}
