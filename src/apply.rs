//! Apply: execute a plan's actions, identity by identity in order, identities concurrently; never re-diffs.

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::certstore;
use crate::cloud::{CertStatus, Cloud, CloudError};
use crate::keygen::{KeyMethod, LocalKey};
use crate::plan::{Action, CertRef, Effect, IdentityPlan, Plan, Summary};
use crate::policy;

/// Why one identity's apply stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("saving the certificate files failed")]
    Store(#[from] certstore::StoreError),
    #[error("certificate {id} was created (INACTIVE, attached to nothing) but its files could not be saved; it will never be activated, and the next apply issues a new one")]
    Unsaved {
        id: String,
        #[source]
        source: certstore::StoreError,
    },
    #[error("the plan refers to a new certificate before creating one")]
    NoNewCertificate,
    #[error(transparent)]
    Keygen(#[from] crate::keygen::KeygenError),
    #[error("certificate {id} returned by CreateCertificateFromCsr does not certify the local key; it stays INACTIVE and attached to nothing")]
    WrongKey { id: String },
}

/// What happened to one identity.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityOutcome {
    pub id: String,
    /// Actions completed, in order.
    pub done: usize,
    pub total: usize,
    /// The action that failed and why (the cause chain, one sentence per link).
    pub error: Option<String>,
    /// The certificate created for this identity, if any.
    pub new_certificate: Option<String>,
}

/// The result of an apply.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub outcomes: Vec<IdentityOutcome>,
    pub summary: Summary,
}

impl ApplyReport {
    pub fn failed(&self) -> impl Iterator<Item = &IdentityOutcome> {
        self.outcomes.iter().filter(|o| o.error.is_some())
    }
}

/// Execute `plan` against `cloud`, at most `parallelism` identities at a time.
/// `on_done` is called after each identity finishes (for progress).
pub async fn apply<C: Cloud>(
    cloud: &C,
    plan: &Plan,
    parallelism: usize,
    on_done: &(dyn Fn(&IdentityOutcome) + Sync),
) -> ApplyReport {
    let mut outcomes: Vec<(usize, IdentityOutcome, Summary)> =
        stream::iter(plan.changes.iter().enumerate())
            .map(|(i, ip)| async move {
                let (outcome, summary) = apply_identity(cloud, ip).await;
                on_done(&outcome);
                (i, outcome, summary)
            })
            .buffer_unordered(parallelism.max(1))
            .collect()
            .await;
    outcomes.sort_by_key(|(i, _, _)| *i);
    let mut summary = Summary::default();
    for (_, _, s) in &outcomes {
        summary.add += s.add;
        summary.change += s.change;
        summary.destroy += s.destroy;
    }
    ApplyReport {
        outcomes: outcomes.into_iter().map(|(_, o, _)| o).collect(),
        summary,
    }
}

async fn apply_identity<C: Cloud>(cloud: &C, ip: &IdentityPlan) -> (IdentityOutcome, Summary) {
    let mut summary = Summary::default();
    let mut new_cert: Option<(String, String)> = None;
    let mut done = 0;
    let mut error = None;
    for action in &ip.actions {
        match run(cloud, action, &mut new_cert).await {
            Ok(()) => {
                done += 1;
                match action.effect() {
                    Effect::Add => summary.add += 1,
                    Effect::Change => summary.change += 1,
                    Effect::Destroy => summary.destroy += 1,
                    Effect::Local => {}
                }
            }
            Err(e) => {
                error = Some(chain(&e));
                break;
            }
        }
    }
    (
        IdentityOutcome {
            id: ip.id.clone(),
            done,
            total: ip.actions.len(),
            error,
            new_certificate: new_cert.map(|(id, _)| id),
        },
        summary,
    )
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

fn resolve(
    c: &CertRef,
    new_cert: &Option<(String, String)>,
) -> Result<(String, String), ApplyError> {
    match c {
        CertRef::Existing { id, arn } => Ok((id.clone(), arn.clone())),
        CertRef::New => new_cert.clone().ok_or(ApplyError::NoNewCertificate),
    }
}

async fn run<C: Cloud>(
    cloud: &C,
    action: &Action,
    new_cert: &mut Option<(String, String)>,
) -> Result<(), ApplyError> {
    match action {
        Action::CreateThing { thing, attributes } => cloud.create_thing(thing, attributes).await?,
        Action::UpdateThing {
            thing,
            attributes,
            before,
        } => {
            let remove: Vec<String> = before
                .keys()
                .filter(|k| !attributes.contains_key(*k))
                .cloned()
                .collect();
            cloud
                .set_thing_attributes(thing, attributes, &remove)
                .await?
        }
        Action::CreatePolicy { policy, document } => {
            cloud
                .create_policy(policy, &policy::to_compact(document))
                .await?
        }
        Action::UpdatePolicy {
            policy,
            document,
            delete_version,
            ..
        } => {
            if let Some(v) = delete_version {
                cloud.delete_policy_version(policy, v).await?;
            }
            cloud
                .create_policy_version(policy, &policy::to_compact(document))
                .await?
        }
        Action::ArchiveLocalFiles { dir, .. } => {
            if dir.exists() {
                let to = certstore::archive(dir)?;
                tracing::info!("archived {} to {}", dir.display(), to.display());
            }
        }
        Action::CreateCertificate {
            dir,
            key: KeyMethod::Aws,
            ..
        } => {
            // Created INACTIVE; the key is on disk before the certificate is attached or activated.
            let cert = cloud.create_keys_and_certificate().await?;
            certstore::save_new(dir, &cert).map_err(|source| ApplyError::Unsaved {
                id: cert.id.clone(),
                source,
            })?;
            *new_cert = Some((cert.id, cert.arn));
        }
        Action::CreateCertificate {
            dir,
            key: KeyMethod::Csr { algorithm },
            ..
        } => {
            // The key is generated and saved first; only the CSR leaves the machine.
            let key = LocalKey::generate(*algorithm)?;
            let tag = format!("csr{}", std::process::id());
            let staging = certstore::Staging::begin(dir, &tag)?;
            staging.write_private_key(&key.private_pem())?;
            staging.write(certstore::PUBLIC_KEY_FILE, &key.public_pem())?;
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let cert = cloud
                .create_certificate_from_csr(&key.request(&id)?)
                .await?;
            if !key.is_certified_by(&cert.certificate_pem) {
                return Err(ApplyError::WrongKey { id: cert.id });
            }
            staging
                .finish(&cert.certificate_pem)
                .map_err(|source| ApplyError::Unsaved {
                    id: cert.id.clone(),
                    source,
                })?;
            *new_cert = Some((cert.id, cert.arn));
        }
        Action::AttachThingPrincipal { thing, certificate } => {
            let (_, arn) = resolve(certificate, new_cert)?;
            cloud.attach_thing_principal(thing, &arn).await?
        }
        Action::AttachPolicy {
            policy,
            certificate,
        } => {
            let (_, arn) = resolve(certificate, new_cert)?;
            cloud.attach_policy(policy, &arn).await?
        }
        Action::DetachPolicy {
            policy,
            certificate,
        } => {
            let (_, arn) = resolve(certificate, new_cert)?;
            cloud.detach_policy(policy, &arn).await?
        }
        Action::ActivateCertificate { certificate, .. } => {
            let (id, _) = resolve(certificate, new_cert)?;
            cloud
                .set_certificate_status(&id, CertStatus::Active)
                .await?
        }
        Action::DeactivateCertificate { certificate, .. } => {
            let (id, _) = resolve(certificate, new_cert)?;
            cloud
                .set_certificate_status(&id, CertStatus::Inactive)
                .await?
        }
        Action::DetachThingPrincipal { thing, certificate } => {
            let (_, arn) = resolve(certificate, new_cert)?;
            cloud.detach_thing_principal(thing, &arn).await?
        }
        Action::DeleteCertificate { certificate } => {
            let (id, _) = resolve(certificate, new_cert)?;
            cloud.delete_certificate(&id).await?
        }
        Action::DeletePolicy { policy, versions } => {
            for v in versions {
                cloud.delete_policy_version(policy, v).await?;
            }
            cloud.delete_policy(policy).await?
        }
        Action::DeleteThing { thing } => cloud.delete_thing(thing).await?,
        Action::RestoreLocalFiles { from, dir } => certstore::restore(from, dir)?,
    }
    Ok(())
}
