//! The `domain:` section: a custom MQTT domain (ACM certificate, Route 53 records, IoT domain configuration), checked offline.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{loc, Diagnostic, Location};

/// TLS policies AWS IoT accepts for a domain configuration (`tlsConfig.securityPolicy`).
pub const TLS_POLICIES: &[&str] = &[
    "IoTSecurityPolicy_TLS13_1_2_2022_10",
    "IoTSecurityPolicy_TLS13_1_3_2022_10",
    "IoTSecurityPolicy_TLS12_1_2_2022_10",
    "IoTSecurityPolicy_TLS12_1_0_2016_01",
    "IoTSecurityPolicy_TLS12_1_0_2015_01",
];

/// AWS IoT's default TLS policy for new domain configurations.
pub const DEFAULT_TLS_POLICY: &str = "IoTSecurityPolicy_TLS13_1_2_2022_10";

/// Where the domain's records live: a Route 53 hosted zone, by name or by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneRef {
    /// Found with ListHostedZonesByName (public zones; exactly one must carry the name).
    Name(String),
    /// The zone id (`Z...`), as `hosted_zone_id:` gives it.
    Id(String),
}

/// A validated `domain:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// The custom endpoint host name, lower case, without a trailing dot.
    pub name: String,
    pub zone: ZoneRef,
    /// IoT domain configuration name.
    pub configuration: String,
    pub tls_policy: String,
    pub location: Option<Location>,
}

/// A custom MQTT domain: an ACM certificate validated through Route 53, an IoT domain
/// configuration, and a CNAME to the account's ATS endpoint.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDomain {
    /// The custom endpoint host name, for example mqtt.example.com.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// The Route 53 hosted zone holding `name`, by name (or give `hosted_zone_id`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    hosted_zone: Option<Spanned<String>>,
    /// The Route 53 hosted zone id (instead of `hosted_zone`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    hosted_zone_id: Option<Spanned<String>>,
    /// IoT domain configuration name (default `<fleet>-mqtt`); must not start with `IoT:`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    configuration: Option<Spanned<String>>,
    /// TLS policy (default IoTSecurityPolicy_TLS13_1_2_2022_10).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    tls_policy: Option<Spanned<String>>,
}

/// Host name syntax: 2–127 labels of 1–63 `[a-z0-9-]` (not starting or ending with `-`), at
/// most 253 characters, no wildcard (a domain configuration serves one name).
pub fn check_host_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!(
            "is {} characters long; DNS names have at most 253",
            name.len()
        ));
    }
    if name.starts_with("*.") {
        return Err("a wildcard cannot be an MQTT endpoint: give the exact host name".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err("expected a fully qualified name such as mqtt.example.com".into());
    }
    for l in &labels {
        if l.is_empty() {
            return Err("has an empty label (two dots in a row, or a leading dot)".into());
        }
        if l.len() > 63 {
            return Err(format!("label {l:?} is longer than 63 characters"));
        }
        if let Some(bad) = l
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "character {bad:?} is not allowed in a host name (allowed: a-z 0-9 - and dots between labels)"
            ));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err(format!("label {l:?} must not start or end with '-'"));
        }
    }
    if labels
        .last()
        .is_some_and(|t| t.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(
            "the top-level label must not be numeric (an IP address is not a domain)".into(),
        );
    }
    Ok(())
}

/// Domain configuration names: 1–128 of `[\w.-]`, and not starting with `IoT:` (reserved for
/// AWS-managed configurations).
pub fn check_configuration_name(name: &str) -> Result<(), String> {
    if name.starts_with("IoT:") {
        return Err(
            "names starting with \"IoT:\" are reserved for AWS-managed domain configurations"
                .into(),
        );
    }
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > 128 {
        return Err(format!(
            "is {} characters long; at most 128 are allowed",
            name.chars().count()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "character {bad:?} is not allowed (allowed: a-z A-Z 0-9 _ . -)"
        ));
    }
    Ok(())
}

/// Route 53 hosted zone ids: up to 32 upper-case letters and digits (`/hostedzone/` accepted).
fn check_zone_id(id: &str) -> Result<String, String> {
    let id = id.trim_start_matches("/hostedzone/");
    if id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err("expected a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ".into());
    }
    Ok(id.to_ascii_uppercase())
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Validate the raw section; problems go to `diags`.
pub(super) fn validate(
    raw: &RawDomain,
    fleet: &str,
    d: &dyn Fn(String, Option<Location>) -> Diagnostic,
    diags: &mut Vec<Diagnostic>,
) -> Option<DomainSpec> {
    let before = diags.len();
    let name = normalize(&raw.name.value);
    if let Err(why) = check_host_name(&name) {
        diags.push(d(
            format!(
                "domain.name {:?} is not a valid host name: {why}",
                raw.name.value
            ),
            loc(&raw.name),
        ));
    }
    let zone = match (&raw.hosted_zone, &raw.hosted_zone_id) {
        (Some(_), Some(id)) => {
            diags.push(d(
                "domain: give hosted_zone (the zone's name) or hosted_zone_id, not both".into(),
                loc(id),
            ));
            None
        }
        (None, None) => {
            diags.push(d(
                "domain.hosted_zone is missing: name the Route 53 hosted zone that holds domain.name (for example example.com), or give hosted_zone_id".into(),
                loc(&raw.name),
            ));
            None
        }
        (Some(z), None) => {
            let zone = normalize(&z.value);
            if let Err(why) = check_host_name(&zone) {
                diags.push(d(
                    format!(
                        "domain.hosted_zone {:?} is not a valid zone name: {why}",
                        z.value
                    ),
                    loc(z),
                ));
            } else if zone == name {
                diags.push(d(
                    format!("domain.name {name} is the apex of zone {zone}: DNS allows no CNAME there; use a name inside the zone, such as mqtt.{zone}"),
                    loc(&raw.name),
                ));
            } else if !name.ends_with(&format!(".{zone}")) {
                diags.push(d(
                    format!("domain.name {name} does not lie inside hosted zone {zone}: Route 53 can only hold its records in a zone it belongs to"),
                    loc(&raw.name),
                ));
            }
            Some(ZoneRef::Name(zone))
        }
        (None, Some(id)) => match check_zone_id(&id.value) {
            Ok(id) => Some(ZoneRef::Id(id)),
            Err(why) => {
                diags.push(d(
                    format!("domain.hosted_zone_id {:?} is invalid: {why}", id.value),
                    loc(id),
                ));
                None
            }
        },
    };
    let configuration = match &raw.configuration {
        Some(c) => {
            if let Err(why) = check_configuration_name(&c.value) {
                diags.push(d(
                    format!(
                        "domain.configuration {:?} is not a valid domain configuration name: {why}",
                        c.value
                    ),
                    loc(c),
                ));
            }
            c.value.clone()
        }
        None => format!("{fleet}-mqtt"),
    };
    let tls_policy = match &raw.tls_policy {
        Some(p) if !TLS_POLICIES.contains(&p.value.as_str()) => {
            diags.push(d(
                format!(
                    "domain.tls_policy {:?} is not a TLS policy AWS IoT knows (known: {})",
                    p.value,
                    TLS_POLICIES.join(", ")
                ),
                loc(p),
            ));
            p.value.clone()
        }
        Some(p) => p.value.clone(),
        None => DEFAULT_TLS_POLICY.to_string(),
    };
    if diags.len() > before {
        return None;
    }
    Some(DomainSpec {
        name,
        zone: zone?,
        configuration,
        tls_policy,
        location: loc(&raw.name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert!(check_host_name("mqtt-sandbox.example.com").is_ok());
        assert!(check_host_name("a.b").is_ok());
        assert!(check_host_name("example").is_err());
        assert!(check_host_name("*.example.com").is_err());
        assert!(check_host_name("mqtt..example.com").is_err());
        assert!(check_host_name("-mqtt.example.com").is_err());
        assert!(check_host_name("mqtt_x.example.com")
            .unwrap_err()
            .contains("'_'"));
        assert!(check_host_name("10.0.0.1").is_err());
        assert!(check_host_name(&format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn configuration_names() {
        assert!(check_configuration_name("solar-sandbox-mqtt").is_ok());
        assert!(check_configuration_name("IoT:Data-ATS")
            .unwrap_err()
            .contains("reserved"));
        assert!(check_configuration_name("a b").is_err());
        assert!(check_configuration_name(&"x".repeat(129)).is_err());
    }

    #[test]
    fn zone_ids() {
        assert_eq!(check_zone_id("/hostedzone/z123").unwrap(), "Z123");
        assert!(check_zone_id("Z-1").is_err());
    }
}
