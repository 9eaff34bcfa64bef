//! The fleet file (`stations.yaml`): parsing with locations, and offline validation of every rule AWS would enforce.

mod diagnostic;
pub mod domain;
pub mod names;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::keygen::{KeyAlgorithm, KeyMethod};

pub use diagnostic::{Diagnostic, Diagnostics, Location};
pub use domain::{DomainSpec, ZoneRef};

/// Thing attribute that marks a thing as owned by a fleet; its value is the fleet name.
pub const OWNER_ATTRIBUTE: &str = "provision_fleet";
/// Things without a thing type carry at most this many attributes (AWS limit).
pub const MAX_THING_ATTRIBUTES: usize = 3;

/// Errors from loading a fleet file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read fleet file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// A validated fleet definition.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The fleet file as given on the command line.
    pub path: PathBuf,
    /// Directory of the fleet file: relative paths in it are relative to this.
    pub base_dir: PathBuf,
    pub name: String,
    /// Region pinned by the file, if any.
    pub region: Option<String>,
    pub certificates_dir: PathBuf,
    /// How new key pairs are made (`certificates.mode`).
    pub key_method: KeyMethod,
    pub station_template: Sourced<PathBuf>,
    pub platform_template: Sourced<PathBuf>,
    /// Topic name templates, by name (`up`, `down`, and any the operator adds).
    pub topics: Vec<(String, Sourced<String>)>,
    pub platform: Identity,
    pub stations: Vec<Identity>,
    pub limits: Limits,
    /// The custom MQTT domain (`domain:`), if configured.
    pub domain: Option<DomainSpec>,
}

/// Client-side rate limits (`limits:`); flags override them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub rate_scale: Option<f64>,
    pub rates: BTreeMap<String, f64>,
    pub retry_deadline_seconds: Option<u64>,
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub location: Option<Location>,
}

/// Whether a least-privilege finding fails validation (the default) or is only reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LintLevel {
    #[default]
    Error,
    Warn,
}

/// A station or the platform: one thing, one certificate, one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    pub location: Option<Location>,
    /// How least-privilege findings in this identity's policy count.
    pub least_privilege: LintLevel,
}

impl Fleet {
    /// The policy name for an identity: `<fleet>-<id>`.
    pub fn policy_name(&self, id: &str) -> String {
        policy_name(&self.name, id)
    }

    /// Directory holding an identity's certificate and keys.
    pub fn cert_dir(&self, id: &str) -> PathBuf {
        self.certificates_dir.join(id)
    }

    /// The platform followed by every station.
    pub fn identities(&self) -> impl Iterator<Item = &Identity> {
        std::iter::once(&self.platform).chain(self.stations.iter())
    }
}

/// SHA-256 (hex) of the fleet file and its two templates, as they are on disk now.
pub fn fingerprint(fleet: &Fleet) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for path in [
        &fleet.path,
        &fleet.station_template.value,
        &fleet.platform_template.value,
    ] {
        let bytes = std::fs::read(path)?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

pub fn policy_name(fleet: &str, id: &str) -> String {
    format!("{fleet}-{id}")
}

// ---------------------------------------------------------------------------
// Raw (as written) form

/// A fleet of stations and the SaaS platform: their things, certificates and policies.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "provision fleet file (stations.yaml)")]
struct RawFleet {
    /// Name of this fleet (1-64 of A-Z a-z 0-9 _ -); marks the things provision owns and prefixes policy names.
    #[schemars(with = "String")]
    fleet: Spanned<String>,
    /// AWS region the fleet lives in (pins it: --region must agree), e.g. cn-northwest-1.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    region: Option<Spanned<String>>,
    certificates: RawCertificates,
    policies: RawPolicies,
    /// Topic name templates (minijinja), by name; `up` and `down` are required. Templates see them as `topics.<name>`.
    #[schemars(with = "BTreeMap<String, String>")]
    topics: Spanned<BTreeMap<String, Spanned<String>>>,
    /// The SaaS platform's identity (client id): subscribes to every uplink, publishes downlinks.
    platform: RawIdentity,
    /// The stations, one thing, certificate and policy each.
    #[serde(default)]
    stations: Vec<RawIdentity>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    domain: Option<domain::RawDomain>,
}

/// API rate limits: AWS's default quotas unless the account has raised ones.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    /// Multiplies every default quota (for example 2.0 for an account with doubled quotas).
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    rate_scale: Option<Spanned<f64>>,
    /// Requests per second by API name (for example `CreateThing: 200`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, f64>")]
    rates: BTreeMap<String, Spanned<f64>>,
    /// How long a throttled call is retried before its station fails, in seconds.
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    retry_deadline_seconds: Option<Spanned<u64>>,
}

/// Where keys and certificates go, and who makes the key pairs.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawCertificates {
    /// Directory for the key files, relative to the fleet file; each identity gets `<dir>/<id>/`.
    #[schemars(with = "String")]
    dir: Spanned<String>,
    /// `aws` (CreateKeysAndCertificate, the default) or `csr` (keys generated locally).
    #[serde(default)]
    #[schemars(with = "Option<CertModeSchema>")]
    mode: Option<Spanned<String>>,
    /// CSR mode only: `ec-p256` (default) or `rsa-2048`.
    #[serde(default)]
    #[schemars(with = "Option<KeyAlgorithmSchema>")]
    key_algorithm: Option<Spanned<String>>,
}

/// Policy templates (minijinja, rendering JSON), relative to the fleet file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawPolicies {
    /// Template of each station's policy.
    #[schemars(with = "String")]
    station: Spanned<String>,
    /// Template of the platform's policy (it also sees `stations`).
    #[schemars(with = "String")]
    platform: Spanned<String>,
}

/// One identity: an IoT thing, its certificate and its policy.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    /// Thing name and MQTT client id: 1-128 of A-Z a-z 0-9 : _ - (no `:` as it also names the policy).
    #[schemars(with = "String")]
    id: Spanned<String>,
    /// Thing attributes (at most 2; provision adds its ownership mark).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ScalarSchema>")]
    attributes: BTreeMap<String, Spanned<Scalar>>,
    /// Explicit opt-out of the least-privilege lint: `warn` reports instead of failing.
    #[serde(default)]
    least_privilege: LintLevel,
}

// Shapes for the JSON Schema only (`provision schema`).
#[allow(dead_code)]
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
enum ScalarSchema {
    Text(String),
    Number(f64),
    Flag(bool),
}

#[allow(dead_code)]
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum CertModeSchema {
    Aws,
    Csr,
}

#[allow(dead_code)]
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum KeyAlgorithmSchema {
    EcP256,
    Rsa2048,
}

/// The JSON Schema of the fleet file, for editors (`provision schema`).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawFleet)).expect("a schema serializes")
}

/// An attribute value: YAML strings, numbers and booleans are all accepted as text.
#[derive(Debug)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn loc<T>(s: &Spanned<T>) -> Option<Location> {
    Location::from_saphyr(s.referenced)
}

fn sourced<T: Clone>(s: &Spanned<T>) -> Sourced<T> {
    Sourced {
        value: s.value.clone(),
        location: loc(s),
    }
}

// ---------------------------------------------------------------------------
// Loading

/// Fleet files larger than this are refused (100,000 stations take about 3 MiB).
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Read, parse and validate a fleet file. Every problem is reported at once.
pub fn load(path: &Path) -> Result<Fleet, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_FILE_BYTES {
        return Err(ConfigError::Invalid(Diagnostics(vec![Diagnostic::new(
            path,
            format!(
                "the file is {:.1} MiB; fleet files are limited to {} MiB (split the fleet into several files)",
                size as f64 / (1024.0 * 1024.0),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        )])));
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    parse(path, &text).map_err(ConfigError::Invalid)
}

/// Parse and validate fleet-file text; `path` is used for messages and relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Fleet, Diagnostics> {
    if text.trim().is_empty() {
        return Err(Diagnostics(vec![Diagnostic::new(
            path,
            "the file is empty; expected a fleet definition with `fleet`, `certificates`, `policies`, `topics`, `platform` and `stations` (`provision init` writes a starter file)",
        )]));
    }
    let raw: RawFleet = serde_saphyr::from_str(text).map_err(|e| {
        let location = e.location().and_then(Location::from_saphyr);
        let mut d = Diagnostic::new(path, yaml_message(&e)).at(location);
        if let Some(station) = location.and_then(|l| station_around(text, l.line)) {
            d = d.station(station);
        }
        Diagnostics(vec![d])
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut diags = Vec::new();
    let d = |msg: String, at: Option<Location>| Diagnostic::new(path, msg).at(at);

    // fleet
    if let Err(why) = names::check_fleet_name(&raw.fleet.value) {
        diags.push(d(
            format!("fleet name {:?} is invalid: {why}", raw.fleet.value),
            loc(&raw.fleet),
        ));
    }
    if let Some(region) = &raw.region {
        if let Err(why) = names::check_region(&region.value) {
            diags.push(d(
                format!("region {:?} is invalid: {why}", region.value),
                loc(region),
            ));
        }
    }
    if raw.certificates.dir.value.trim().is_empty() {
        diags.push(d(
            "certificates.dir must not be empty".into(),
            loc(&raw.certificates.dir),
        ));
    }
    let algorithm = match raw.certificates.key_algorithm.as_ref() {
        None => KeyAlgorithm::EcP256,
        Some(a) => match a.value.as_str() {
            "ec-p256" => KeyAlgorithm::EcP256,
            "rsa-2048" => KeyAlgorithm::Rsa2048,
            other => {
                diags.push(d(
                    format!("certificates.key_algorithm {other:?} is not supported: use ec-p256 or rsa-2048"),
                    loc(a),
                ));
                KeyAlgorithm::EcP256
            }
        },
    };
    let key_method = match raw.certificates.mode.as_ref() {
        None => KeyMethod::Aws,
        Some(m) => match m.value.as_str() {
            "aws" => KeyMethod::Aws,
            "csr" => KeyMethod::Csr { algorithm },
            other => {
                diags.push(d(
                    format!("certificates.mode {other:?} is not supported: use aws (AWS generates the key pair) or csr (the key pair is generated here)"),
                    loc(m),
                ));
                KeyMethod::Aws
            }
        },
    };
    if key_method == KeyMethod::Aws {
        if let Some(a) = &raw.certificates.key_algorithm {
            diags.push(d(
                "certificates.key_algorithm applies only with `mode: csr` (AWS generates RSA 2048 keys itself)".into(),
                loc(a),
            ));
        }
    }
    for (key, p) in [
        ("policies.station", &raw.policies.station),
        ("policies.platform", &raw.policies.platform),
    ] {
        if p.value.trim().is_empty() {
            diags.push(d(format!("{key} must name a template file"), loc(p)));
        }
    }
    let mut limits = Limits::default();
    if let Some(l) = &raw.limits {
        if let Some(scale) = &l.rate_scale {
            if !(scale.value > 0.0 && scale.value.is_finite()) {
                diags.push(d(
                    format!(
                        "limits.rate_scale must be a positive number, not {}",
                        scale.value
                    ),
                    loc(scale),
                ));
            }
            limits.rate_scale = Some(scale.value);
        }
        for (api, rate) in &l.rates {
            if !crate::cloud::limiter::DEFAULT_RATES
                .iter()
                .any(|(k, _)| k == api)
            {
                diags.push(d(
                    format!(
                        "limits.rates: {api:?} is not an API provision calls (known: {})",
                        crate::cloud::limiter::DEFAULT_RATES
                            .iter()
                            .map(|(k, _)| *k)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    loc(rate),
                ));
            } else if !(rate.value > 0.0 && rate.value.is_finite()) {
                diags.push(d(
                    format!("limits.rates.{api} must be a positive number of requests per second"),
                    loc(rate),
                ));
            }
            limits.rates.insert(api.clone(), rate.value);
        }
        limits.retry_deadline_seconds = l.retry_deadline_seconds.as_ref().map(|s| s.value);
    }
    let mut topics = Vec::new();
    for required in ["up", "down"] {
        match raw.topics.value.get(required) {
            Some(t) => topics.push((required.to_string(), sourced(t))),
            None => diags.push(d(
                format!("topics.{required} is missing: it is the station's {} topic template, for example \"device/station/{required}/{{{{ station.id }}}}\"", if required == "up" { "uplink" } else { "downlink" }),
                loc(&raw.topics),
            )),
        }
    }
    for (name, template) in &raw.topics.value {
        if name == "up" || name == "down" {
            continue;
        }
        if !names::is_identifier(name) {
            diags.push(d(
                format!("topic name {name:?} must be an identifier (letters, digits, _), as templates use it as topics.{name}"),
                loc(template),
            ));
        }
        topics.push((name.clone(), sourced(template)));
    }

    let domain = raw
        .domain
        .as_ref()
        .and_then(|r| domain::validate(r, &raw.fleet.value, &d, &mut diags));

    // identities
    let fleet_ok = names::check_fleet_name(&raw.fleet.value).is_ok();
    let mut seen: HashMap<String, Option<Location>> = HashMap::new();
    let mut identity = |raw_id: &RawIdentity, what: &str, diags: &mut Vec<Diagnostic>| {
        let id = raw_id.id.value.clone();
        let at = loc(&raw_id.id);
        let mut ok = true;
        if let Err(why) = names::check_thing_name(&id) {
            diags.push(d(
                format!("{what} id {id:?} is not a valid thing name: {why}"),
                at,
            ));
            ok = false;
        } else if let Err(why) = names::check_policy_name(&policy_name(&raw.fleet.value, &id))
            // An invalid fleet name is reported once, above, not once per station.
            .map_err(|why| if fleet_ok { why } else { String::new() })
        {
            if !why.is_empty() {
                diags.push(
                    d(
                        format!(
                            "policy name {:?} (fleet-id) is invalid: {why}",
                            policy_name(&raw.fleet.value, &id)
                        ),
                        at,
                    )
                    .station(&id),
                );
            }
        }
        if ok {
            if let Some(first) = seen.get(&id) {
                let first = first
                    .map(|l| format!(" (first defined at line {})", l.line))
                    .unwrap_or_default();
                diags.push(d(format!("duplicate id {id:?}{first}"), at).station(&id));
            } else {
                seen.insert(id.clone(), at);
            }
        }
        let mut attributes = BTreeMap::new();
        for (name, value) in &raw_id.attributes {
            let vat = loc(value);
            if name == OWNER_ATTRIBUTE {
                diags.push(
                    d(
                        format!("attribute {OWNER_ATTRIBUTE:?} is reserved: provision sets it to mark the things this fleet owns"),
                        vat,
                    )
                    .station(&id),
                );
                continue;
            }
            if let Err(why) = names::check_attribute_name(name) {
                diags.push(
                    d(format!("attribute name {name:?} is invalid: {why}"), vat).station(&id),
                );
            }
            if let Err(why) = names::check_attribute_value(&value.value.0) {
                diags.push(
                    d(
                        format!(
                            "attribute {name:?} has an invalid value {:?}: {why}",
                            value.value.0
                        ),
                        vat,
                    )
                    .station(&id),
                );
            }
            attributes.insert(name.clone(), value.value.0.clone());
        }
        if attributes.len() + 1 > MAX_THING_ATTRIBUTES {
            diags.push(
                d(
                    format!(
                        "{} attributes given, but a thing without a thing type carries at most {MAX_THING_ATTRIBUTES}, and provision uses one ({OWNER_ATTRIBUTE}): keep at most {}",
                        attributes.len(),
                        MAX_THING_ATTRIBUTES - 1
                    ),
                    at,
                )
                .station(&id),
            );
        }
        Identity {
            id,
            attributes,
            location: at,
            least_privilege: raw_id.least_privilege,
        }
    };
    let platform = identity(&raw.platform, "platform", &mut diags);
    let stations: Vec<Identity> = raw
        .stations
        .iter()
        .map(|s| identity(s, "station", &mut diags))
        .collect();

    if !diags.is_empty() {
        diags.sort_by_key(|d| (d.line.unwrap_or(0), d.column.unwrap_or(0)));
        return Err(Diagnostics(diags));
    }
    Ok(Fleet {
        path: path.to_path_buf(),
        certificates_dir: base_dir.join(&raw.certificates.dir.value),
        key_method,
        station_template: Sourced {
            value: base_dir.join(&raw.policies.station.value),
            location: loc(&raw.policies.station),
        },
        platform_template: Sourced {
            value: base_dir.join(&raw.policies.platform.value),
            location: loc(&raw.policies.platform),
        },
        base_dir,
        name: raw.fleet.value,
        region: raw.region.map(|r| r.value),
        topics,
        platform,
        stations,
        limits,
        domain,
    })
}

/// The YAML/serde error message, without the snippet (the location is reported separately).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    // The library appends its own " at line X, column Y"; the diagnostic carries that already.
    let text = match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let text = text.lines().next().unwrap_or_default().trim();
    // Say it in the fleet file's terms.
    text.replace("missing field", "missing key")
        .replace("unknown field", "unknown key")
        .replace("expected sequence start", "expected a list here")
        .replace(
            "expected mapping start",
            "expected a mapping (key: value) here",
        )
}

/// The station a line of the `stations:` list belongs to, found by its `- id:` line, so that
/// parse errors name the station even though parsing stopped.
fn station_around(text: &str, line: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let stations_at = lines.iter().position(|l| l.starts_with("stations:"))?;
    let upto = (line as usize).min(lines.len());
    if upto <= stations_at + 1 {
        return None;
    }
    lines[stations_at + 1..upto].iter().rev().find_map(|l| {
        let rest = l
            .trim_start()
            .strip_prefix('-')?
            .trim_start()
            .strip_prefix("id:")?;
        let id = rest
            .split('#')
            .next()?
            .trim()
            .trim_matches(|c| c == '"' || c == '\'');
        (!id.is_empty()).then(|| id.to_string())
    })
}

#[cfg(test)]
mod tests;
