//! Execute a domain plan's steps in order (never re-diffs); the wait for ISSUED is a step of its own, with progress and a timeout.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cloud::{Cloud, CloudError, NewDomainConfiguration};
use crate::plan::domain::{AcmRef, DomainAction, DomainEffect, DomainPlan};
use crate::plan::{Effect, Summary};

/// Why a domain's apply stopped.
#[derive(Debug, thiserror::Error)]
pub enum DomainApplyError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("the plan refers to a new ACM certificate before requesting one")]
    NoNewCertificate,
    #[error("ACM certificate {arn} for {domain} no longer exists")]
    CertificateGone { arn: String, domain: String },
    #[error("ACM certificate {arn} for {domain} is {status}{reason}: ACM will not issue it. Check the validation CNAME in the hosted zone (and CAA records); the next apply requests a new certificate")]
    CertificateFailed {
        arn: String,
        domain: String,
        status: String,
        reason: String,
    },
    #[error("ACM certificate {arn} for {domain} is still {status} after {waited}s (--wait-timeout): check that the validation CNAME {records} is in the hosted zone and that DNS delegates the domain to that zone; run apply again to keep waiting")]
    WaitTimedOut {
        arn: String,
        domain: String,
        status: String,
        waited: u64,
        records: String,
    },
    #[error("ACM published no DNS validation record for certificate {arn} ({domain}) within {waited}s; run apply again")]
    NoValidationRecords {
        arn: String,
        domain: String,
        waited: u64,
    },
}

/// How the wait for ISSUED behaves.
#[derive(Clone, Copy)]
pub struct WaitOptions<'a> {
    pub timeout: Duration,
    /// First poll interval; it doubles up to `max_poll`.
    pub poll: Duration,
    pub max_poll: Duration,
    /// Seconds between progress lines.
    pub progress_every: Duration,
    /// Receives progress lines (stderr in the CLI).
    pub on_progress: &'a (dyn Fn(&str) + Sync),
}

/// What happened to one domain.
#[derive(Debug, Clone, Serialize)]
pub struct DomainOutcome {
    pub name: String,
    pub done: usize,
    pub total: usize,
    pub error: Option<String>,
    /// The ACM certificate requested by this apply, if any.
    pub new_certificate: Option<String>,
}

/// Execute every domain plan, in order; returns the outcomes and what was done.
pub async fn apply_domains<C: Cloud>(
    cloud: &C,
    plans: &[DomainPlan],
    wait: WaitOptions<'_>,
) -> (Vec<DomainOutcome>, Summary) {
    let mut outcomes = Vec::new();
    let mut summary = Summary::default();
    for p in plans {
        let mut new_cert = None;
        let mut done = 0;
        let mut error = None;
        for a in &p.actions {
            match run(cloud, a, &mut new_cert, wait).await {
                Ok(()) => {
                    done += 1;
                    match a.effect() {
                        DomainEffect::One(Effect::Add) => summary.add += 1,
                        DomainEffect::One(Effect::Change) => summary.change += 1,
                        DomainEffect::One(Effect::Destroy) => summary.destroy += 1,
                        DomainEffect::One(Effect::Local) => {}
                        DomainEffect::Replace => {
                            summary.add += 1;
                            summary.destroy += 1;
                        }
                    }
                }
                Err(e) => {
                    error = Some(chain(&e));
                    break;
                }
            }
        }
        outcomes.push(DomainOutcome {
            name: p.name.clone(),
            done,
            total: p.actions.len(),
            error,
            new_certificate: new_cert,
        });
    }
    (outcomes, summary)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn resolve(c: &AcmRef, new_cert: &Option<String>) -> Result<String, DomainApplyError> {
    match c {
        AcmRef::Existing { arn } => Ok(arn.clone()),
        AcmRef::New => new_cert.clone().ok_or(DomainApplyError::NoNewCertificate),
    }
}

async fn run<C: Cloud>(
    cloud: &C,
    action: &DomainAction,
    new_cert: &mut Option<String>,
    wait: WaitOptions<'_>,
) -> Result<(), DomainApplyError> {
    match action {
        DomainAction::RequestCertificate {
            domain,
            idempotency_token,
            tags,
            ..
        } => {
            let arn = cloud
                .acm_request_certificate(domain, idempotency_token, tags)
                .await?;
            tracing::info!("requested ACM certificate {arn} for {domain}");
            *new_cert = Some(arn);
        }
        DomainAction::UpsertValidationRecords {
            zone_id,
            certificate,
            records,
        } => {
            let arn = resolve(certificate, new_cert)?;
            let records = if records.is_empty() {
                validation_records(cloud, &arn, wait).await?
            } else {
                records.clone()
            };
            for r in &records {
                cloud.upsert_cname(zone_id, &r.name, &r.value).await?;
            }
        }
        DomainAction::WaitForCertificate {
            certificate,
            domain,
            ..
        } => {
            let arn = resolve(certificate, new_cert)?;
            wait_issued(cloud, &arn, domain, wait).await?;
        }
        DomainAction::CreateDomainConfiguration {
            configuration,
            domain,
            certificate,
            tls_policy,
        } => {
            let arn = resolve(certificate, new_cert)?;
            cloud
                .create_domain_configuration(&NewDomainConfiguration {
                    name: configuration,
                    domain_name: domain,
                    certificate_arn: &arn,
                    tls_policy,
                })
                .await?
        }
        DomainAction::UpdateDomainConfiguration {
            configuration,
            enable,
            tls_policy,
            ..
        } => {
            cloud
                .update_domain_configuration(
                    configuration,
                    enable.then_some(true),
                    tls_policy.as_deref(),
                )
                .await?
        }
        DomainAction::ReplaceDomainConfiguration {
            configuration,
            domain,
            certificate,
            tls_policy,
            enabled,
            ..
        } => {
            let arn = resolve(certificate, new_cert)?;
            // AWS deletes only a DISABLED configuration; each step is found and finished by
            // the next plan if this one is interrupted.
            if *enabled {
                cloud
                    .update_domain_configuration(configuration, Some(false), None)
                    .await?;
            }
            cloud.delete_domain_configuration(configuration).await?;
            cloud
                .create_domain_configuration(&NewDomainConfiguration {
                    name: configuration,
                    domain_name: domain,
                    certificate_arn: &arn,
                    tls_policy,
                })
                .await?
        }
        DomainAction::UpsertCname {
            zone_id,
            name,
            target,
            ..
        } => cloud.upsert_cname(zone_id, name, target).await?,
        DomainAction::DeleteDomainConfiguration {
            configuration,
            enabled,
        } => {
            if *enabled {
                cloud
                    .update_domain_configuration(configuration, Some(false), None)
                    .await?;
            }
            cloud.delete_domain_configuration(configuration).await?
        }
        DomainAction::DeleteRecord {
            zone_id,
            name,
            record,
        } => cloud.delete_cname(zone_id, name, &record.into()).await?,
        DomainAction::DeleteCertificate { arn, .. } => {
            match cloud.acm_delete_certificate(arn).await {
                Err(e) if e.is_not_found() => {}
                other => other?,
            }
        }
    }
    Ok(())
}

/// ACM publishes a new certificate's validation records a few seconds after the request.
async fn validation_records<C: Cloud>(
    cloud: &C,
    arn: &str,
    wait: WaitOptions<'_>,
) -> Result<Vec<crate::cloud::DnsRecord>, DomainApplyError> {
    let started = Instant::now();
    let limit = wait.timeout.min(Duration::from_secs(120));
    let mut poll = wait.poll;
    loop {
        let Some(c) = cloud.acm_describe_certificate(arn).await? else {
            return Err(DomainApplyError::CertificateGone {
                arn: arn.to_string(),
                domain: String::new(),
            });
        };
        if !c.validation_records.is_empty() {
            return Ok(c.validation_records);
        }
        if started.elapsed() + poll > limit {
            return Err(DomainApplyError::NoValidationRecords {
                arn: arn.to_string(),
                domain: c.domain_name,
                waited: started.elapsed().as_secs(),
            });
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(wait.max_poll);
    }
}

/// Poll until ISSUED; FAILED, VALIDATION_TIMED_OUT (and any other final status) is an error.
async fn wait_issued<C: Cloud>(
    cloud: &C,
    arn: &str,
    domain: &str,
    wait: WaitOptions<'_>,
) -> Result<(), DomainApplyError> {
    let started = Instant::now();
    let mut poll = wait.poll;
    let mut last_line: Option<Instant> = None;
    loop {
        let Some(c) = cloud.acm_describe_certificate(arn).await? else {
            return Err(DomainApplyError::CertificateGone {
                arn: arn.to_string(),
                domain: domain.to_string(),
            });
        };
        let secs = started.elapsed().as_secs();
        match c.status.as_str() {
            "ISSUED" => {
                if last_line.is_some() {
                    (wait.on_progress)(&format!(
                        "provision: ACM certificate for {domain} is ISSUED ({secs}s)"
                    ));
                }
                return Ok(());
            }
            "PENDING_VALIDATION" => {}
            other => {
                return Err(DomainApplyError::CertificateFailed {
                    arn: arn.to_string(),
                    domain: domain.to_string(),
                    status: other.to_string(),
                    reason: c
                        .failure_reason
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                })
            }
        }
        if started.elapsed() >= wait.timeout {
            return Err(DomainApplyError::WaitTimedOut {
                arn: arn.to_string(),
                domain: domain.to_string(),
                status: c.status,
                waited: secs,
                records: c
                    .validation_records
                    .iter()
                    .map(|r| format!("{} -> {}", r.name, r.value))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if last_line.is_none_or(|t| t.elapsed() >= wait.progress_every) {
            (wait.on_progress)(&format!(
                "provision: waiting for ACM to issue the certificate for {domain} ({arn}): {}, {secs}s of {}s (--wait-timeout)",
                c.status,
                wait.timeout.as_secs()
            ));
            last_line = Some(Instant::now());
        }
        let left = wait.timeout.saturating_sub(started.elapsed());
        tokio::time::sleep(poll.min(left).max(Duration::from_millis(10))).await;
        poll = (poll * 2).min(wait.max_poll);
    }
}
