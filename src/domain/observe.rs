//! Read the custom domain's state: the ATS endpoint, the hosted zone, the fleet's ACM certificates, the records and the domain configuration.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::{usable, CONFIGURATION_TAG, DATA_ATS, FLEET_TAG, ZONE_TAG};
use crate::cloud::{
    self, dns_name, AcmCertificateDetail, Cloud, CnameRecord, DomainConfiguration, HostedZone,
};
use crate::config::{DomainSpec, ZoneRef};

/// An ACM certificate carrying this fleet's tag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OwnedCert {
    pub detail: AcmCertificateDetail,
    pub tags: BTreeMap<String, String>,
}

/// The configured domain as the account holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObservedCurrent {
    /// The hosted zone, or why it cannot be used (a problem for the plan).
    pub zone: std::result::Result<HostedZone, String>,
    /// The fleet's certificates for the domain name, any status, oldest first.
    pub certificates: Vec<OwnedCert>,
    /// Validation CNAMEs of those certificates as the zone holds them, by record name.
    pub validation: BTreeMap<String, Option<CnameRecord>>,
    pub configuration: Option<DomainConfiguration>,
    /// The CNAME at the domain name.
    pub cname: Option<CnameRecord>,
}

/// A domain this fleet set up that the file no longer names (read only with `--prune`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeftoverDomain {
    pub cert: OwnedCert,
    /// The domain configuration its tag names, if it exists and serves this certificate.
    pub configuration: Option<DomainConfiguration>,
    pub zone_id: Option<String>,
    /// The CNAME at the certificate's name, when it points at the ATS endpoint.
    pub cname: Option<CnameRecord>,
    /// Its validation CNAMEs that exist, with their record names.
    pub validation: Vec<(String, CnameRecord)>,
}

/// Everything read for the domain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObservedDomain {
    pub ats_endpoint: String,
    pub current: Option<ObservedCurrent>,
    pub leftovers: Vec<LeftoverDomain>,
}

/// Read the domain's state. Nothing is read (None) when the file has no `domain:` and
/// `--prune` is off: fleets without a custom domain make no ACM or Route 53 call.
pub async fn observe<C: Cloud>(
    cloud: &C,
    fleet: &str,
    spec: Option<&DomainSpec>,
    prune: bool,
) -> cloud::Result<Option<ObservedDomain>> {
    if spec.is_none() && !prune {
        return Ok(None);
    }
    let (ats_endpoint, certificates) = tokio::try_join!(
        cloud.describe_endpoint(DATA_ATS),
        cloud.acm_list_certificates()
    )?;
    let wanted = spec.map(|s| s.name.as_str());
    // Tags are read for the certificates that may be ours: for the name, or every one when pruning.
    let candidates: Vec<_> = certificates
        .into_iter()
        .filter(|c| prune || Some(c.domain_name.as_str()) == wanted)
        .collect();
    let owned: Vec<OwnedCert> = stream::iter(candidates)
        .map(|c| async move {
            let tags = match cloud.acm_list_tags(&c.arn).await {
                Ok(t) => t,
                // Deleted since it was listed.
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            };
            if tags.get(FLEET_TAG).map(String::as_str) != Some(fleet) {
                return Ok(None);
            }
            Ok(cloud
                .acm_describe_certificate(&c.arn)
                .await?
                .map(|detail| OwnedCert { detail, tags }))
        })
        .buffered(8)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect();
    let (mine, others): (Vec<OwnedCert>, Vec<OwnedCert>) = owned
        .into_iter()
        .partition(|c| Some(c.detail.domain_name.as_str()) == wanted);

    let current = match spec {
        Some(spec) => Some(observe_current(cloud, spec, mine).await?),
        None => None,
    };
    let mut leftovers = Vec::new();
    for cert in others {
        leftovers.push(observe_leftover(cloud, cert, &ats_endpoint, spec).await?);
    }
    Ok(Some(ObservedDomain {
        ats_endpoint,
        current,
        leftovers,
    }))
}

async fn observe_current<C: Cloud>(
    cloud: &C,
    spec: &DomainSpec,
    certificates: Vec<OwnedCert>,
) -> cloud::Result<ObservedCurrent> {
    let zone = match &spec.zone {
        ZoneRef::Name(name) => match cloud.find_hosted_zone(name).await {
            Ok(Some(z)) => Ok(z),
            Ok(None) => Err(format!(
                "Route 53 has no public hosted zone named {name} in this account, so the records of domain {} cannot be written; create the zone (or give domain.hosted_zone_id)",
                spec.name
            )),
            Err(e) if e.code() == Some("AmbiguousZone") => Err(e.to_string()),
            Err(e) => return Err(e),
        },
        ZoneRef::Id(id) => match cloud.get_hosted_zone(id).await? {
            None => Err(format!(
                "Route 53 has no hosted zone {id} (domain.hosted_zone_id) in this account"
            )),
            Some(z) if !spec.name.ends_with(&format!(".{}", z.name)) => Err(format!(
                "domain {} does not lie inside hosted zone {id} ({}); Route 53 can only hold its records in a zone it belongs to",
                spec.name, z.name
            )),
            Some(z) => Ok(z),
        },
    };
    let configuration = cloud
        .describe_domain_configuration(&spec.configuration)
        .await?;
    let mut validation = BTreeMap::new();
    let mut cname = None;
    if let Ok(z) = &zone {
        cname = cloud.get_cname(&z.id, &spec.name).await?;
        for c in certificates.iter().filter(|c| usable(&c.detail.status)) {
            for r in &c.detail.validation_records {
                if !validation.contains_key(&r.name) {
                    let found = cloud.get_cname(&z.id, &r.name).await?;
                    validation.insert(r.name.clone(), found);
                }
            }
        }
    }
    Ok(ObservedCurrent {
        zone,
        certificates,
        validation,
        configuration,
        cname,
    })
}

async fn observe_leftover<C: Cloud>(
    cloud: &C,
    cert: OwnedCert,
    ats_endpoint: &str,
    spec: Option<&DomainSpec>,
) -> cloud::Result<LeftoverDomain> {
    // The configuration its tag names, unless the file now uses that name for the current
    // domain (then it is the current domain's business: replaced, not deleted).
    let configuration = match cert.tags.get(CONFIGURATION_TAG) {
        Some(name) if spec.is_none_or(|s| &s.configuration != name) => cloud
            .describe_domain_configuration(name)
            .await?
            .filter(|c| c.certificate_arns.contains(&cert.detail.arn)),
        _ => None,
    };
    let zone_id = cert.tags.get(ZONE_TAG).cloned();
    let mut cname = None;
    let mut validation = Vec::new();
    if let Some(z) = &zone_id {
        let read = |name: String| async move {
            match cloud.get_cname(z, &name).await {
                Ok(r) => Ok(r),
                // The zone is gone: nothing of ours is left in it.
                Err(e) if e.code() == Some("NoSuchHostedZone") => Ok(None),
                Err(e) => Err(e),
            }
        };
        cname = read(cert.detail.domain_name.clone())
            .await?
            .filter(|r| r.value == dns_name(ats_endpoint));
        for r in &cert.detail.validation_records {
            // The current domain may share the record (same name); keep it then.
            if spec.is_some_and(|s| r.name.ends_with(&s.name)) {
                continue;
            }
            if let Some(found) = read(r.name.clone()).await? {
                if found.value == r.value {
                    validation.push((r.name.clone(), found));
                }
            }
        }
    }
    Ok(LeftoverDomain {
        cert,
        configuration,
        zone_id,
        cname,
        validation,
    })
}
