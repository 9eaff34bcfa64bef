//! The custom domain's part of the plan: ordered steps (ACM certificate, validation records, wait, domain configuration, CNAME), decided by a pure diff.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Effect, Problem, Summary};
use crate::cloud::{dns_name, CnameRecord, DnsRecord};
use crate::config::DomainSpec;
use crate::domain::{
    idempotency_token, usable, LeftoverDomain, ObservedCurrent, ObservedDomain, OwnedCert,
    CONFIGURATION_TAG, FLEET_TAG, ZONE_TAG,
};

/// The steps for one custom domain name, run in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DomainPlan {
    /// The custom domain name.
    pub name: String,
    /// The domain is no longer in the fleet file and is being deleted (`--prune`).
    #[serde(default)]
    pub removal: bool,
    pub actions: Vec<DomainAction>,
}

/// An ACM certificate a step works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AcmRef {
    Existing {
        arn: String,
    },
    /// The certificate requested by this domain's `request_certificate` step.
    New,
}

/// One step of a domain plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum DomainAction {
    /// Request a DNS-validated ACM certificate, tagged with the fleet's mark; the idempotency
    /// token makes a retried or interrupted request return the same certificate.
    RequestCertificate {
        domain: String,
        idempotency_token: String,
        tags: BTreeMap<String, String>,
        reason: String,
    },
    /// UPSERT the certificate's DNS validation CNAMEs (for a new certificate they are read
    /// from ACM when it has published them: `records` is empty then).
    UpsertValidationRecords {
        zone_id: String,
        certificate: AcmRef,
        records: Vec<DnsRecord>,
    },
    /// Wait until ACM has ISSUED the certificate (`--wait-timeout`).
    WaitForCertificate {
        certificate: AcmRef,
        domain: String,
        status: String,
    },
    /// Create the IoT domain configuration: service type DATA, ENABLED.
    CreateDomainConfiguration {
        configuration: String,
        domain: String,
        certificate: AcmRef,
        tls_policy: String,
    },
    /// Enable it and/or change its TLS policy, in place.
    UpdateDomainConfiguration {
        configuration: String,
        enable: bool,
        tls_policy: Option<String>,
        before_status: String,
        before_tls_policy: Option<String>,
    },
    /// What AWS cannot change in place (domain name, server certificate, service type):
    /// disable, delete, create.
    ReplaceDomainConfiguration {
        configuration: String,
        domain: String,
        certificate: AcmRef,
        tls_policy: String,
        before_domain: String,
        before_certificate: Option<String>,
        /// Whether the old one is ENABLED (it is disabled first).
        enabled: bool,
        reason: String,
    },
    /// UPSERT the CNAME devices resolve: the custom name to the ATS endpoint.
    UpsertCname {
        zone_id: String,
        name: String,
        target: String,
        before: Option<String>,
    },
    /// Disable (when enabled), then delete, a domain configuration (`--prune`).
    DeleteDomainConfiguration {
        configuration: String,
        enabled: bool,
    },
    DeleteRecord {
        zone_id: String,
        name: String,
        record: CnameRecordData,
    },
    DeleteCertificate {
        arn: String,
        domain: String,
    },
}

/// A CNAME's value and TTL, as Route 53 needs them to delete it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CnameRecordData {
    pub value: String,
    pub ttl: i64,
}

impl From<&CnameRecord> for CnameRecordData {
    fn from(r: &CnameRecord) -> Self {
        Self {
            value: r.value.clone(),
            ttl: r.ttl,
        }
    }
}

impl From<&CnameRecordData> for CnameRecord {
    fn from(r: &CnameRecordData) -> Self {
        Self {
            value: r.value.clone(),
            ttl: r.ttl,
        }
    }
}

/// How a step counts. A replace counts as one to add and one to destroy, as in Terraform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainEffect {
    One(Effect),
    Replace,
}

impl DomainAction {
    pub fn effect(&self) -> DomainEffect {
        use DomainAction::*;
        DomainEffect::One(match self {
            RequestCertificate { .. }
            | UpsertValidationRecords { .. }
            | CreateDomainConfiguration { .. } => Effect::Add,
            UpsertCname { before: None, .. } => Effect::Add,
            UpsertCname { .. } | UpdateDomainConfiguration { .. } => Effect::Change,
            WaitForCertificate { .. } => Effect::Local,
            ReplaceDomainConfiguration { .. } => return DomainEffect::Replace,
            DeleteDomainConfiguration { .. } | DeleteRecord { .. } | DeleteCertificate { .. } => {
                Effect::Destroy
            }
        })
    }
}

impl Summary {
    /// Add the domain steps' counts.
    pub fn add_domains(&mut self, domains: &[DomainPlan]) {
        for a in domains.iter().flat_map(|d| d.actions.iter()) {
            match a.effect() {
                DomainEffect::One(Effect::Add) => self.add += 1,
                DomainEffect::One(Effect::Change) => self.change += 1,
                DomainEffect::One(Effect::Destroy) => self.destroy += 1,
                DomainEffect::One(Effect::Local) => {}
                DomainEffect::Replace => {
                    self.add += 1;
                    self.destroy += 1;
                }
            }
        }
    }
}

/// The domain's plans and problems. Pure.
pub fn diff_domain(
    fleet: &str,
    spec: Option<&DomainSpec>,
    observed: Option<&ObservedDomain>,
    prune: bool,
) -> (Vec<DomainPlan>, Vec<Problem>) {
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    let Some(observed) = observed else {
        return (plans, problems);
    };
    if let (Some(spec), Some(cur)) = (spec, &observed.current) {
        match diff_current(fleet, spec, cur, &observed.ats_endpoint, prune) {
            Ok(actions) if actions.is_empty() => {}
            Ok(actions) => plans.push(DomainPlan {
                name: spec.name.clone(),
                removal: false,
                actions,
            }),
            Err(message) => problems.push(Problem {
                id: format!("domain {}", spec.name),
                message,
            }),
        }
    }
    if prune {
        let mut by_name: BTreeMap<&str, Vec<&LeftoverDomain>> = BTreeMap::new();
        for l in &observed.leftovers {
            by_name
                .entry(l.cert.detail.domain_name.as_str())
                .or_default()
                .push(l);
        }
        for (name, leftovers) in by_name {
            plans.push(DomainPlan {
                name: name.to_string(),
                removal: true,
                actions: removal(&leftovers),
            });
        }
    }
    (plans, problems)
}

/// Delete a domain the file no longer names, in an order where a crash leaves it findable: the
/// configuration (disabled first), the CNAME and validation records, then the certificate,
/// whose tags are how provision finds the rest.
fn removal(leftovers: &[&LeftoverDomain]) -> Vec<DomainAction> {
    let mut actions = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for l in leftovers {
        if let Some(c) = &l.configuration {
            if seen.insert(format!("config/{}", c.name)) {
                actions.push(DomainAction::DeleteDomainConfiguration {
                    configuration: c.name.clone(),
                    enabled: c.status == "ENABLED",
                });
            }
        }
    }
    for l in leftovers {
        let Some(zone_id) = &l.zone_id else { continue };
        let records = l
            .cname
            .iter()
            .map(|r| (l.cert.detail.domain_name.clone(), r))
            .chain(l.validation.iter().map(|(n, r)| (n.clone(), r)));
        for (name, r) in records {
            if seen.insert(format!("record/{zone_id}/{name}")) {
                actions.push(DomainAction::DeleteRecord {
                    zone_id: zone_id.clone(),
                    name,
                    record: r.into(),
                });
            }
        }
    }
    for l in leftovers {
        actions.push(DomainAction::DeleteCertificate {
            arn: l.cert.detail.arn.clone(),
            domain: l.cert.detail.domain_name.clone(),
        });
    }
    actions
}

/// The certificate the domain should use: the one its configuration uses, if it is ours and
/// usable; else the newest ISSUED one; else the newest pending one.
fn choose(cur: &ObservedCurrent) -> Option<&OwnedCert> {
    let in_use = cur
        .configuration
        .as_ref()
        .and_then(|c| c.certificate_arns.first());
    let ok = || cur.certificates.iter().filter(|c| usable(&c.detail.status));
    ok().find(|c| Some(&c.detail.arn) == in_use)
        .or_else(|| ok().rev().find(|c| c.detail.status == "ISSUED"))
        .or_else(|| ok().next_back())
}

fn diff_current(
    fleet: &str,
    spec: &DomainSpec,
    cur: &ObservedCurrent,
    ats_endpoint: &str,
    prune: bool,
) -> Result<Vec<DomainAction>, String> {
    let zone = cur.zone.as_ref().map_err(Clone::clone)?;
    let mut actions = Vec::new();
    let chosen = choose(cur);

    // 1. The certificate.
    let certificate = match chosen {
        Some(c) => AcmRef::Existing {
            arn: c.detail.arn.clone(),
        },
        None => {
            let reason = match cur.certificates.last() {
                None => "no certificate for this name yet".to_string(),
                Some(c) => format!(
                    "certificate {} is {}{}",
                    c.detail.arn,
                    c.detail.status,
                    c.detail
                        .failure_reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            };
            let tags = BTreeMap::from([
                (FLEET_TAG.to_string(), fleet.to_string()),
                (CONFIGURATION_TAG.to_string(), spec.configuration.clone()),
                (ZONE_TAG.to_string(), zone.id.clone()),
            ]);
            actions.push(DomainAction::RequestCertificate {
                domain: spec.name.clone(),
                // A new generation per certificate this fleet already has for the name, so a
                // failed one is not returned again, while an interrupted request is.
                idempotency_token: idempotency_token(fleet, &spec.name, cur.certificates.len()),
                tags,
                reason,
            });
            AcmRef::New
        }
    };

    // 2. Its validation records (ACM renews with them too, so they are checked when ISSUED).
    match chosen {
        Some(c) if c.detail.validation_records.is_empty() && c.detail.status != "ISSUED" => actions
            .push(DomainAction::UpsertValidationRecords {
                zone_id: zone.id.clone(),
                certificate: certificate.clone(),
                records: Vec::new(),
            }),
        Some(c) => {
            let missing: Vec<DnsRecord> = c
                .detail
                .validation_records
                .iter()
                .filter(|r| {
                    cur.validation
                        .get(&r.name)
                        .and_then(|f| f.as_ref())
                        .map(|f| f.value.as_str())
                        != Some(r.value.as_str())
                })
                .cloned()
                .collect();
            if !missing.is_empty() {
                actions.push(DomainAction::UpsertValidationRecords {
                    zone_id: zone.id.clone(),
                    certificate: certificate.clone(),
                    records: missing,
                });
            }
        }
        None => actions.push(DomainAction::UpsertValidationRecords {
            zone_id: zone.id.clone(),
            certificate: AcmRef::New,
            records: Vec::new(),
        }),
    }

    // 3. Issued before anything uses it.
    let status = chosen.map(|c| c.detail.status.as_str());
    if status != Some("ISSUED") {
        actions.push(DomainAction::WaitForCertificate {
            certificate: certificate.clone(),
            domain: spec.name.clone(),
            status: status.unwrap_or("not requested yet").to_string(),
        });
    }

    // 4. The domain configuration.
    let cert_arn = match &certificate {
        AcmRef::Existing { arn } => Some(arn.as_str()),
        AcmRef::New => None,
    };
    match &cur.configuration {
        None => actions.push(DomainAction::CreateDomainConfiguration {
            configuration: spec.configuration.clone(),
            domain: spec.name.clone(),
            certificate: certificate.clone(),
            tls_policy: spec.tls_policy.clone(),
        }),
        Some(c) => {
            let current_cert = c.certificate_arns.first().map(String::as_str);
            let replace = if c.domain_name != spec.name {
                Some(format!("domain name {} -> {}", c.domain_name, spec.name))
            } else if c.service_type != "DATA" {
                Some(format!("service type {} -> DATA", c.service_type))
            } else if current_cert != cert_arn {
                Some(format!(
                    "server certificate {} -> {}",
                    current_cert.unwrap_or("(none)"),
                    cert_arn.unwrap_or("the new certificate")
                ))
            } else {
                None
            };
            let tls = c
                .tls_policy
                .as_deref()
                .unwrap_or(crate::config::domain::DEFAULT_TLS_POLICY);
            if let Some(reason) = replace {
                actions.push(DomainAction::ReplaceDomainConfiguration {
                    configuration: spec.configuration.clone(),
                    domain: spec.name.clone(),
                    certificate: certificate.clone(),
                    tls_policy: spec.tls_policy.clone(),
                    before_domain: c.domain_name.clone(),
                    before_certificate: current_cert.map(str::to_string),
                    enabled: c.status == "ENABLED",
                    reason,
                });
            } else if c.status != "ENABLED" || tls != spec.tls_policy {
                actions.push(DomainAction::UpdateDomainConfiguration {
                    configuration: spec.configuration.clone(),
                    enable: c.status != "ENABLED",
                    tls_policy: (tls != spec.tls_policy).then(|| spec.tls_policy.clone()),
                    before_status: c.status.clone(),
                    before_tls_policy: c.tls_policy.clone(),
                });
            }
        }
    }

    // 5. The name devices resolve, once the configuration serves it.
    let target = dns_name(ats_endpoint);
    if cur.cname.as_ref().map(|r| r.value.as_str()) != Some(target.as_str()) {
        actions.push(DomainAction::UpsertCname {
            zone_id: zone.id.clone(),
            name: spec.name.clone(),
            target,
            before: cur.cname.as_ref().map(|r| r.value.clone()),
        });
    }

    // 6. With --prune: the fleet's other certificates for this name (failed, or replaced).
    if prune {
        for c in &cur.certificates {
            if Some(c.detail.arn.as_str()) != cert_arn {
                actions.push(DomainAction::DeleteCertificate {
                    arn: c.detail.arn.clone(),
                    domain: spec.name.clone(),
                });
            }
        }
    }
    Ok(actions)
}

fn cert_name(c: &AcmRef) -> String {
    match c {
        AcmRef::Existing { arn } => format!("certificate {}", short_arn(arn)),
        AcmRef::New => "the new certificate".to_string(),
    }
}

/// `arn:...:certificate/<id>` shortened to its id.
fn short_arn(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Render one domain plan, Terraform-style (`style` maps an effect to its symbol and style).
pub(super) fn render_domain<'s>(
    out: &mut String,
    dp: &DomainPlan,
    style: impl Fn(DomainEffect) -> (&'static str, &'s console::Style),
    bold: &console::Style,
) {
    use std::fmt::Write;
    let _ = writeln!(out);
    let header = if dp.removal {
        format!(
            "# domain {} (not in the fleet file: deleted by --prune)",
            dp.name
        )
    } else {
        format!("# domain {}", dp.name)
    };
    let _ = writeln!(out, "  {}", bold.apply_to(header));
    for a in &dp.actions {
        let line = match a {
            DomainAction::RequestCertificate {
                domain,
                reason,
                tags,
                ..
            } => format!(
                "ACM certificate for {domain} (DNS validation, tagged {FLEET_TAG}={}; {reason})",
                tags.get(FLEET_TAG).map(String::as_str).unwrap_or("")
            ),
            DomainAction::UpsertValidationRecords {
                zone_id,
                certificate,
                records,
            } if records.is_empty() => format!(
                "validation CNAME of {} in zone {zone_id} (as ACM publishes it)",
                cert_name(certificate)
            ),
            DomainAction::UpsertValidationRecords {
                zone_id,
                certificate,
                records,
            } => format!(
                "validation CNAME of {} in zone {zone_id}: {}",
                cert_name(certificate),
                records
                    .iter()
                    .map(|r| format!("{} -> {}", r.name, r.value))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            DomainAction::WaitForCertificate {
                certificate,
                status,
                ..
            } => format!(
                "wait until ACM has ISSUED {} ({status}; up to --wait-timeout)",
                cert_name(certificate)
            ),
            DomainAction::CreateDomainConfiguration {
                configuration,
                domain,
                certificate,
                tls_policy,
            } => format!(
                "domain configuration {configuration} (DATA, {domain}, {}, {tls_policy}, ENABLED)",
                cert_name(certificate)
            ),
            DomainAction::UpdateDomainConfiguration {
                configuration,
                enable,
                tls_policy,
                before_status,
                before_tls_policy,
            } => {
                let mut what = Vec::new();
                if *enable {
                    what.push(format!("{before_status} -> ENABLED"));
                }
                if let Some(p) = tls_policy {
                    what.push(format!(
                        "TLS policy {} -> {p}",
                        before_tls_policy.as_deref().unwrap_or("(none)")
                    ));
                }
                format!("domain configuration {configuration}: {}", what.join(", "))
            }
            DomainAction::ReplaceDomainConfiguration {
                configuration,
                certificate,
                tls_policy,
                reason,
                ..
            } => format!(
                "domain configuration {configuration} ({reason}; AWS cannot change that in place: disable, delete, create with {}, {tls_policy})",
                cert_name(certificate)
            ),
            DomainAction::UpsertCname {
                name,
                target,
                before: None,
                ..
            } => format!("CNAME {name} -> {target}"),
            DomainAction::UpsertCname {
                name,
                target,
                before: Some(b),
                ..
            } => format!("CNAME {name}: {b} -> {target}"),
            DomainAction::DeleteDomainConfiguration {
                configuration,
                enabled,
            } => format!(
                "delete domain configuration {configuration}{}",
                if *enabled { " (disabled first)" } else { "" }
            ),
            DomainAction::DeleteRecord { zone_id, name, record } => {
                format!("delete CNAME {name} -> {} in zone {zone_id}", record.value)
            }
            DomainAction::DeleteCertificate { arn, domain } => {
                format!("delete ACM certificate {} ({domain})", short_arn(arn))
            }
        };
        let (sym, st) = style(a.effect());
        let _ = writeln!(out, "  {} {line}", st.apply_to(sym));
    }
}

#[cfg(test)]
#[path = "domain_tests.rs"]
mod tests;
