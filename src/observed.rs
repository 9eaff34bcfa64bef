//! Observed state: what the account (and the local key directory) holds for each desired identity.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::certstore::{self, LocalFiles};
use crate::cloud::{self, Certificate, Cloud, PolicyVersion, Thing};
use crate::config::OWNER_ATTRIBUTE;
use crate::desired::{Desired, DesiredIdentity};
use crate::policy;

/// Errors while reading the account.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("reading the account failed")]
    Cloud(#[from] cloud::CloudError),
    #[error("station {id}: reading its local files failed")]
    Local {
        id: String,
        #[source]
        source: certstore::StoreError,
    },
}

/// The state of a thing with a desired identity's name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum ThingState {
    Absent,
    /// Carries this fleet's ownership mark.
    Owned(Thing),
    /// Exists without this fleet's mark (unmarked, or another fleet's).
    Foreign(Thing),
}

/// A certificate relevant to an identity, with the policies attached to it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObservedCert {
    pub cert: Certificate,
    pub attached_policies: Vec<String>,
}

/// The identity's policy as the account holds it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ObservedPolicy {
    /// The default version's document (`Value::Null` if it is not JSON).
    pub document: serde_json::Value,
    pub default_version_id: String,
    /// Read only when the document differs from the desired one (an update will need them).
    pub versions: Option<Vec<PolicyVersion>>,
}

/// Everything read for one identity.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ObservedIdentity {
    pub thing: ThingState,
    /// Certificates attached to the thing (other principal kinds are ignored).
    pub thing_certificates: Vec<ObservedCert>,
    /// The certificate whose file is in the local directory, when the account has it.
    pub local_certificate: Option<ObservedCert>,
    pub local: LocalFiles,
    pub policy: Option<ObservedPolicy>,
}

/// The observed state of every desired identity, by id.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Observed {
    pub identities: BTreeMap<String, ObservedIdentity>,
    /// Things this fleet owns that the file no longer lists, by name.
    pub orphans: Vec<Orphan>,
    /// The custom domain's state ([`crate::domain::observe`]), when read.
    pub domain: Option<crate::domain::ObservedDomain>,
}

/// An owned thing that is not in the fleet file (a removed station). Its details are read only
/// when pruning.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Orphan {
    pub name: String,
    /// Read only when pruning.
    pub details: Option<OrphanDetails>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OrphanDetails {
    pub certificates: Vec<ObservedCert>,
    /// The fleet's policy for this station (`<fleet>-<id>`), with its version ids.
    pub policy: Option<(String, Vec<PolicyVersion>)>,
}

/// Read what the account holds for `desired`, with at most `parallelism` identities in flight
/// (the cloud layer paces each API at its quota).
pub async fn observe<C: Cloud>(
    cloud: &C,
    desired: &Desired,
    parallelism: usize,
    prune: bool,
    on_progress: &(dyn Fn() + Sync),
) -> Result<Observed, ObserveError> {
    let (owned, certificates, policies) = tokio::try_join!(
        cloud.list_things_with_attribute(OWNER_ATTRIBUTE, &desired.fleet),
        cloud.list_certificates(),
        cloud.list_policies(),
    )?;
    let owned: HashMap<String, Thing> = owned.into_iter().map(|t| (t.name.clone(), t)).collect();
    let by_arn: HashMap<&str, &Certificate> =
        certificates.iter().map(|c| (c.arn.as_str(), c)).collect();
    let by_id: HashMap<&str, &Certificate> =
        certificates.iter().map(|c| (c.id.as_str(), c)).collect();
    let policies: HashSet<String> = policies.into_iter().collect();
    let ctx = Ctx {
        cloud,
        fleet: &desired.fleet,
        owned: &owned,
        by_arn: &by_arn,
        by_id: &by_id,
        policies: &policies,
    };

    let identities: Vec<(String, ObservedIdentity)> = stream::iter(desired.identities.iter())
        .map(|d| {
            let ctx = &ctx;
            async move {
                let o = ctx.observe_one(d).await?;
                on_progress();
                Ok::<_, ObserveError>((d.id.clone(), o))
            }
        })
        .buffer_unordered(parallelism.max(1))
        .try_collect()
        .await?;
    let wanted: HashSet<&str> = desired.identities.iter().map(|d| d.id.as_str()).collect();
    let mut orphan_names: Vec<&String> = owned
        .keys()
        .filter(|n| !wanted.contains(n.as_str()))
        .collect();
    orphan_names.sort();
    let orphans: Vec<Orphan> = stream::iter(orphan_names)
        .map(|name| {
            let ctx = &ctx;
            async move {
                let details = if prune {
                    Some(ctx.orphan_details(name).await?)
                } else {
                    None
                };
                Ok::<_, ObserveError>(Orphan {
                    name: name.clone(),
                    details,
                })
            }
        })
        .buffered(parallelism.max(1))
        .try_collect()
        .await?;
    Ok(Observed {
        identities: identities.into_iter().collect(),
        orphans,
        domain: None,
    })
}

struct Ctx<'a, C> {
    cloud: &'a C,
    fleet: &'a str,
    owned: &'a HashMap<String, Thing>,
    by_arn: &'a HashMap<&'a str, &'a Certificate>,
    by_id: &'a HashMap<&'a str, &'a Certificate>,
    policies: &'a HashSet<String>,
}

impl<C: Cloud> Ctx<'_, C> {
    async fn observe_one(&self, d: &DesiredIdentity) -> Result<ObservedIdentity, ObserveError> {
        let local = certstore::inspect(&d.cert_dir).map_err(|source| ObserveError::Local {
            id: d.id.clone(),
            source,
        })?;
        let thing = match self.owned.get(&d.id) {
            Some(t) => ThingState::Owned(t.clone()),
            None => match self.cloud.describe_thing(&d.id).await? {
                None => ThingState::Absent,
                // Listed by attribute just now but maybe created since: check the mark again.
                Some(t)
                    if t.attributes.get(OWNER_ATTRIBUTE).map(String::as_str)
                        == Some(self.fleet) =>
                {
                    ThingState::Owned(t)
                }
                Some(t) => ThingState::Foreign(t),
            },
        };

        let (thing_certs, policy) = tokio::join!(
            async {
                let mut certs = Vec::new();
                if let ThingState::Owned(_) = &thing {
                    for arn in self.cloud.list_thing_principals(&d.id).await? {
                        if let Some(c) = self.by_arn.get(arn.as_str()) {
                            certs.push(self.with_policies(c).await?);
                        }
                    }
                }
                Ok::<_, cloud::CloudError>(certs)
            },
            self.observe_policy(d),
        );
        let mut thing_certificates = thing_certs?;
        // AWS does not promise an order: sort, so the same state reads (and fingerprints) the same.
        thing_certificates.sort_by(|a, b| a.cert.id.cmp(&b.cert.id));
        let policy = policy?;

        let local_certificate = match &local.certificate_id {
            Some(id) => match thing_certificates.iter().find(|c| &c.cert.id == id) {
                Some(c) => Some(c.clone()),
                None => match self.by_id.get(id.as_str()) {
                    Some(c) => Some(self.with_policies(c).await?),
                    None => None,
                },
            },
            None => None,
        };
        Ok(ObservedIdentity {
            thing,
            thing_certificates,
            local_certificate,
            local,
            policy,
        })
    }

    async fn orphan_details(&self, name: &str) -> cloud::Result<OrphanDetails> {
        let mut certificates = Vec::new();
        for arn in self.cloud.list_thing_principals(name).await? {
            if let Some(c) = self.by_arn.get(arn.as_str()) {
                certificates.push(self.with_policies(c).await?);
            }
        }
        let policy_name = crate::config::policy_name(self.fleet, name);
        let policy = if self.policies.contains(&policy_name) {
            let versions = self.cloud.list_policy_versions(&policy_name).await?;
            Some((policy_name, versions))
        } else {
            None
        };
        Ok(OrphanDetails {
            certificates,
            policy,
        })
    }

    async fn with_policies(&self, c: &Certificate) -> cloud::Result<ObservedCert> {
        let mut attached_policies = self.cloud.list_attached_policies(&c.arn).await?;
        attached_policies.sort();
        Ok(ObservedCert {
            cert: c.clone(),
            attached_policies,
        })
    }

    async fn observe_policy(&self, d: &DesiredIdentity) -> cloud::Result<Option<ObservedPolicy>> {
        if !self.policies.contains(&d.policy_name) {
            return Ok(None);
        }
        let Some(p) = self.cloud.get_policy(&d.policy_name).await? else {
            return Ok(None);
        };
        let document = serde_json::from_str(&p.document).unwrap_or(serde_json::Value::Null);
        let versions = if policy::equivalent(&document, &d.policy) {
            None
        } else {
            let mut v = self.cloud.list_policy_versions(&d.policy_name).await?;
            v.sort_by(|a, b| a.version_id.cmp(&b.version_id));
            Some(v)
        };
        Ok(Some(ObservedPolicy {
            document,
            default_version_id: p.default_version_id,
            versions,
        }))
    }
}
