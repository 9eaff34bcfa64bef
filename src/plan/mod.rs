//! The plan: a pure, synchronous diff of desired against observed state, as plain data that apply executes.

pub mod domain;
mod render;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cloud::CertStatus;
use crate::desired::{Desired, DesiredIdentity, Role};
use crate::keygen::KeyMethod;
use crate::observed::{Observed, ObservedCert, ObservedIdentity, OrphanDetails, ThingState};
use crate::policy;

pub use domain::{AcmRef, DomainAction, DomainPlan};
pub use render::render_text;

/// Version of the JSON plan format (see docs/plan-format.md).
pub const FORMAT_VERSION: u32 = 1;

/// What provision will do, per identity, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Plan {
    pub format_version: u32,
    pub fleet: String,
    pub account_id: String,
    pub region: String,
    /// Identities with something to do, platform first, then stations in file order.
    pub changes: Vec<IdentityPlan>,
    /// Identities already as desired.
    pub unchanged: Vec<String>,
    /// What provision cannot or will not do by itself; each needs the operator.
    pub problems: Vec<Problem>,
    /// Owned things no longer in the file, left alone because `--prune` was not given.
    #[serde(default)]
    pub not_pruned: Vec<String>,
    /// The custom domain's steps (and, with `--prune`, those of domains no longer in the file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<DomainPlan>,
    /// The custom domain stations should connect to, when the file configures one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_domain: Option<String>,
    /// The account's `iot:Data-ATS` endpoint, when the plan read it (a domain is configured or
    /// `--prune`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ats_endpoint: Option<String>,
    pub summary: Summary,
    /// The options the plan was made with; a saved plan is applied with the same.
    #[serde(default)]
    pub scope: Scope,
    /// What the plan was made from; applying a saved plan refuses if either changed since.
    #[serde(default)]
    pub fingerprint: Fingerprint,
}

/// Options that shaped a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Scope {
    /// `--target` ids (empty: every identity).
    pub targets: Vec<String>,
    pub prune: bool,
    pub replace_missing_keys: bool,
}

/// SHA-256 digests (hex) of the inputs of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Fingerprint {
    /// The fleet file and its templates, as read.
    pub file: String,
    /// Everything read from the account (and the local key directories).
    pub account: String,
}

/// The JSON Schema of the plan format (docs/plan.schema.json).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Plan)).expect("a schema serializes")
}

/// The digest of an observed state (stable: observe sorts what AWS leaves unordered).
pub fn fingerprint_observed(observed: &Observed) -> String {
    use sha2::{Digest, Sha256};
    /// Streams the serialization into the hash: no copy of the whole state in memory.
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hashing(Sha256::new());
    serde_json::to_writer(&mut h, observed).expect("observed state serializes");
    hex::encode(h.0.finalize())
}

/// The ordered actions for one identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IdentityPlan {
    pub id: String,
    pub role: Role,
    /// The station is no longer in the fleet file and is being deleted (`--prune`).
    #[serde(default)]
    pub removal: bool,
    pub actions: Vec<Action>,
}

/// A certificate an action works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CertRef {
    /// A certificate the account already has.
    Existing { id: String, arn: String },
    /// The certificate created by this identity's `create_certificate` action.
    New,
}

/// One step. Steps of an identity run in order; identities run concurrently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    CreateThing {
        thing: String,
        attributes: BTreeMap<String, String>,
    },
    UpdateThing {
        thing: String,
        attributes: BTreeMap<String, String>,
        before: BTreeMap<String, String>,
    },
    CreatePolicy {
        policy: String,
        document: serde_json::Value,
    },
    UpdatePolicy {
        policy: String,
        document: serde_json::Value,
        before: serde_json::Value,
        /// AWS keeps at most 5 versions: this oldest non-default one goes first.
        delete_version: Option<String>,
    },
    /// Move the identity's key directory to the archive (never deleted).
    ArchiveLocalFiles {
        dir: PathBuf,
        reason: String,
    },
    /// Create a key pair and an INACTIVE certificate; save the files before anything else.
    CreateCertificate {
        dir: PathBuf,
        reason: String,
        key: KeyMethod,
    },
    AttachThingPrincipal {
        thing: String,
        certificate: CertRef,
    },
    AttachPolicy {
        policy: String,
        certificate: CertRef,
    },
    DetachPolicy {
        policy: String,
        certificate: CertRef,
    },
    ActivateCertificate {
        certificate: CertRef,
        reason: String,
    },
    DeactivateCertificate {
        certificate: CertRef,
        reason: String,
    },
    DetachThingPrincipal {
        thing: String,
        certificate: CertRef,
    },
    DeleteCertificate {
        certificate: CertRef,
    },
    /// Delete the listed non-default versions, then the policy.
    DeletePolicy {
        policy: String,
        versions: Vec<String>,
    },
    DeleteThing {
        thing: String,
    },
    /// Move an archived key directory back into place: it holds the key of the station's
    /// ACTIVE certificate (an interrupted rotation or replacement archived it).
    RestoreLocalFiles {
        from: PathBuf,
        dir: PathBuf,
    },
}

/// How an action counts in the summary, as Terraform counts resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Add,
    Change,
    Destroy,
    /// Local only (archiving files).
    Local,
}

impl Action {
    pub fn effect(&self) -> Effect {
        match self {
            Action::CreateThing { .. }
            | Action::CreatePolicy { .. }
            | Action::CreateCertificate { .. }
            | Action::AttachThingPrincipal { .. }
            | Action::AttachPolicy { .. } => Effect::Add,
            Action::UpdateThing { .. }
            | Action::UpdatePolicy { .. }
            | Action::ActivateCertificate { .. }
            | Action::DeactivateCertificate { .. } => Effect::Change,
            Action::DetachPolicy { .. }
            | Action::DetachThingPrincipal { .. }
            | Action::DeleteCertificate { .. }
            | Action::DeletePolicy { .. }
            | Action::DeleteThing { .. } => Effect::Destroy,
            Action::ArchiveLocalFiles { .. } | Action::RestoreLocalFiles { .. } => Effect::Local,
        }
    }
}

/// Something that needs the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Problem {
    pub id: String,
    pub message: String,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

impl Summary {
    /// Count actions as Terraform counts resources.
    pub fn of(changes: &[IdentityPlan]) -> Self {
        let mut summary = Summary::default();
        for a in changes.iter().flat_map(|c| c.actions.iter()) {
            match a.effect() {
                Effect::Add => summary.add += 1,
                Effect::Change => summary.change += 1,
                Effect::Destroy => summary.destroy += 1,
                Effect::Local => {}
            }
        }
        summary
    }
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty() || self.domains.iter().any(|d| !d.actions.is_empty())
    }

    pub fn action_count(&self) -> usize {
        self.changes.iter().map(|c| c.actions.len()).sum::<usize>()
            + self.domains.iter().map(|d| d.actions.len()).sum::<usize>()
    }
}

/// Options that change what the diff may decide.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    /// Replace the certificate of an identity whose private key is gone (off: report a problem).
    pub replace_missing_keys: bool,
    /// Delete owned stations that are no longer in the file.
    pub prune: bool,
}

/// Compare and decide. Pure: no I/O.
pub fn diff(desired: &Desired, observed: &Observed, opts: DiffOptions) -> Plan {
    let mut changes = Vec::new();
    let mut unchanged = Vec::new();
    let mut problems = Vec::new();
    for d in &desired.identities {
        let absent = ObservedIdentity {
            thing: ThingState::Absent,
            thing_certificates: Vec::new(),
            local_certificate: None,
            local: Default::default(),
            policy: None,
        };
        let o = observed.identities.get(&d.id).unwrap_or(&absent);
        match diff_identity(d, o, opts, desired.key_method) {
            Ok(actions) if actions.is_empty() => unchanged.push(d.id.clone()),
            Ok(actions) => changes.push(IdentityPlan {
                id: d.id.clone(),
                role: d.role,
                removal: false,
                actions,
            }),
            Err(message) => problems.push(Problem {
                id: d.id.clone(),
                message,
            }),
        }
    }
    let mut not_pruned = Vec::new();
    for orphan in &observed.orphans {
        match (&orphan.details, opts.prune) {
            (Some(details), true) => changes.push(IdentityPlan {
                id: orphan.name.clone(),
                role: Role::Station,
                removal: true,
                actions: removal(desired, &orphan.name, details),
            }),
            _ => not_pruned.push(orphan.name.clone()),
        }
    }
    let (domains, domain_problems) = domain::diff_domain(
        &desired.fleet,
        desired.domain.as_ref(),
        observed.domain.as_ref(),
        opts.prune,
    );
    problems.extend(domain_problems);
    let mut summary = Summary::of(&changes);
    summary.add_domains(&domains);
    Plan {
        format_version: FORMAT_VERSION,
        fleet: desired.fleet.clone(),
        account_id: desired.aws.account_id.clone(),
        region: desired.aws.region.clone(),
        changes,
        unchanged,
        problems,
        not_pruned,
        domains,
        custom_domain: desired.domain.as_ref().map(|d| d.name.clone()),
        ats_endpoint: observed.domain.as_ref().map(|d| d.ats_endpoint.clone()),
        summary,
        scope: Scope {
            targets: Vec::new(),
            prune: opts.prune,
            replace_missing_keys: opts.replace_missing_keys,
        },
        fingerprint: Fingerprint {
            file: String::new(),
            account: fingerprint_observed(observed),
        },
    }
}

/// Delete a removed station, in an order where a crash leaves it findable (the thing, which
/// carries the ownership mark, goes last) and each delete's preconditions hold: keys archived,
/// policies detached, the policy's old versions and the policy deleted, the certificate
/// deactivated, detached and deleted, then the thing.
fn removal(desired: &Desired, name: &str, details: &OrphanDetails) -> Vec<Action> {
    let mut actions = vec![Action::ArchiveLocalFiles {
        dir: desired.certificates_dir.join(name),
        reason: "station removed from the fleet file".into(),
    }];
    for c in &details.certificates {
        for p in &c.attached_policies {
            actions.push(Action::DetachPolicy {
                policy: p.clone(),
                certificate: existing(c),
            });
        }
    }
    if let Some((policy, versions)) = &details.policy {
        actions.push(Action::DeletePolicy {
            policy: policy.clone(),
            versions: versions
                .iter()
                .filter(|v| !v.is_default)
                .map(|v| v.version_id.clone())
                .collect(),
        });
    }
    for c in &details.certificates {
        if c.cert.status == CertStatus::Active {
            actions.push(Action::DeactivateCertificate {
                certificate: existing(c),
                reason: "station removed".into(),
            });
        }
        actions.push(Action::DetachThingPrincipal {
            thing: name.to_string(),
            certificate: existing(c),
        });
        actions.push(Action::DeleteCertificate {
            certificate: existing(c),
        });
    }
    actions.push(Action::DeleteThing {
        thing: name.to_string(),
    });
    actions
}

/// Let go of a certificate that is not the station's: deactivate it (if asked), detach its
/// policies, detach it from the thing.
fn retire(
    actions: &mut Vec<Action>,
    d: &DesiredIdentity,
    o: &ObservedIdentity,
    c: &ObservedCert,
    deactivate: bool,
) {
    if deactivate && c.cert.status == CertStatus::Active {
        actions.push(Action::DeactivateCertificate {
            certificate: existing(c),
            reason: "not this station's certificate (the one in its key directory is)".into(),
        });
    }
    for p in &c.attached_policies {
        actions.push(Action::DetachPolicy {
            policy: p.clone(),
            certificate: existing(c),
        });
    }
    if o.thing_certificates.iter().any(|t| t.cert.id == c.cert.id) {
        actions.push(Action::DetachThingPrincipal {
            thing: d.id.clone(),
            certificate: existing(c),
        });
    }
}

/// The station's certificate exists: make sure it is attached, carries exactly its policy, is
/// ACTIVE, and is the only one on the thing.
fn keep_existing(
    actions: &mut Vec<Action>,
    d: &DesiredIdentity,
    o: &ObservedIdentity,
    c: &ObservedCert,
) -> Result<(), String> {
    if !matches!(c.cert.status, CertStatus::Active | CertStatus::Inactive) {
        return Err(format!(
            "certificate {} is {}; provision only activates INACTIVE certificates. Finish or cancel its transfer/registration first",
            c.cert.id, c.cert.status
        ));
    }
    let cert = existing(c);
    if !o.thing_certificates.iter().any(|t| t.cert.id == c.cert.id) {
        actions.push(Action::AttachThingPrincipal {
            thing: d.id.clone(),
            certificate: cert.clone(),
        });
    }
    if !c.attached_policies.contains(&d.policy_name) {
        actions.push(Action::AttachPolicy {
            policy: d.policy_name.clone(),
            certificate: cert.clone(),
        });
    }
    for extra in c.attached_policies.iter().filter(|p| **p != d.policy_name) {
        actions.push(Action::DetachPolicy {
            policy: extra.clone(),
            certificate: cert.clone(),
        });
    }
    if c.cert.status == CertStatus::Inactive {
        actions.push(Action::ActivateCertificate {
            certificate: cert,
            reason: "certificate is INACTIVE".into(),
        });
    }
    // One certificate per station: any other on the thing (left by an interrupted
    // replacement, or attached out of band) is deactivated and detached.
    for other in o
        .thing_certificates
        .iter()
        .filter(|t| t.cert.id != c.cert.id)
    {
        retire(actions, d, o, other, true);
    }
    Ok(())
}

fn existing(c: &ObservedCert) -> CertRef {
    CertRef::Existing {
        id: c.cert.id.clone(),
        arn: c.cert.arn.clone(),
    }
}

fn diff_identity(
    d: &DesiredIdentity,
    o: &ObservedIdentity,
    opts: DiffOptions,
    key: KeyMethod,
) -> Result<Vec<Action>, String> {
    let mut actions = Vec::new();

    // 1. The thing.
    match &o.thing {
        ThingState::Absent => actions.push(Action::CreateThing {
            thing: d.id.clone(),
            attributes: d.attributes.clone(),
        }),
        ThingState::Foreign(t) => {
            let owner = t
                .attributes
                .get(crate::config::OWNER_ATTRIBUTE)
                .map(|f| format!("fleet {f:?}"))
                .unwrap_or_else(|| "no fleet (it has no provision_fleet attribute)".into());
            return Err(format!(
                "thing {} already exists and belongs to {owner}; provision only manages things it created. Rename the station, or delete the thing (or set its provision_fleet attribute to this fleet's name to adopt it)",
                d.id
            ));
        }
        ThingState::Owned(t) if t.attributes != d.attributes => actions.push(Action::UpdateThing {
            thing: d.id.clone(),
            attributes: d.attributes.clone(),
            before: t.attributes.clone(),
        }),
        ThingState::Owned(_) => {}
    }

    // 2. The policy.
    match &o.policy {
        None => actions.push(Action::CreatePolicy {
            policy: d.policy_name.clone(),
            document: d.policy.clone(),
        }),
        Some(p) if !policy::equivalent(&p.document, &d.policy) => {
            let versions = p.versions.clone().unwrap_or_default();
            let delete_version = if versions.len() >= 5 {
                versions
                    .iter()
                    .filter(|v| !v.is_default)
                    .min_by_key(|v| (v.created, v.version_id.clone()))
                    .map(|v| v.version_id.clone())
            } else {
                None
            };
            actions.push(Action::UpdatePolicy {
                policy: d.policy_name.clone(),
                document: d.policy.clone(),
                before: p.document.clone(),
                delete_version,
            });
        }
        Some(_) => {}
    }

    // 3. The certificate: the local files say which one is this identity's.
    let dir = d.cert_dir.clone();
    let local = &o.local;
    if local.present && (local.certificate_id.is_none() || !local.has_private_key) {
        let missing = if local.certificate_id.is_none() {
            crate::certstore::CERTIFICATE_FILE
        } else {
            crate::certstore::PRIVATE_KEY_FILE
        };
        return Err(format!(
            "{} exists but has no {missing}; provision will not guess which certificate is this station's. Restore the file, or move the directory away so a new certificate is issued",
            dir.display()
        ));
    }
    let attach_all = |actions: &mut Vec<Action>, cert: CertRef| {
        actions.push(Action::AttachThingPrincipal {
            thing: d.id.clone(),
            certificate: cert.clone(),
        });
        actions.push(Action::AttachPolicy {
            policy: d.policy_name.clone(),
            certificate: cert.clone(),
        });
        actions.push(Action::ActivateCertificate {
            certificate: cert,
            reason: "new certificate".into(),
        });
    };
    // Certificates to let go of once the new one is in place.

    match (&local.certificate_id, &o.local_certificate) {
        (None, _) => {
            // No local files. An ACTIVE certificate on the thing means its key is lost to us.
            let active: Vec<&ObservedCert> = o
                .thing_certificates
                .iter()
                .filter(|c| c.cert.status == CertStatus::Active)
                .collect();
            // Its key may be in the archive (an interrupted rotation): put it back.
            if let Some((from, c)) = active.iter().find_map(|c| {
                local
                    .archived
                    .iter()
                    .find(|(_, id)| *id == c.cert.id)
                    .map(|(p, _)| (p, *c))
            }) {
                actions.push(Action::RestoreLocalFiles {
                    from: from.clone(),
                    dir: dir.clone(),
                });
                keep_existing(&mut actions, d, o, c)?;
                return Ok(actions);
            }
            if !active.is_empty() && !opts.replace_missing_keys {
                return Err(format!(
                    "certificate {} is ACTIVE on thing {} but its private key is not in {}; provision will not silently mint a second certificate. Restore the directory, or run apply with --replace-missing-keys to issue a new certificate and deactivate the old one",
                    active[0].cert.id,
                    d.id,
                    dir.display()
                ));
            }
            actions.push(Action::CreateCertificate {
                dir: dir.clone(),
                reason: "no certificate yet".into(),
                key,
            });
            attach_all(&mut actions, CertRef::New);
            // Leftovers (inactive or revoked certificates without local files, or lost keys).
            for c in &o.thing_certificates {
                retire(&mut actions, d, o, c, true);
            }
        }
        (Some(id), None) => {
            actions.push(Action::ArchiveLocalFiles {
                dir: dir.clone(),
                reason: format!("certificate {id} no longer exists in the account"),
            });
            actions.push(Action::CreateCertificate {
                dir: dir.clone(),
                reason: format!("replaces certificate {id}, which no longer exists"),
                key,
            });
            attach_all(&mut actions, CertRef::New);
            for other in &o.thing_certificates {
                retire(&mut actions, d, o, other, true);
            }
        }
        (Some(_), Some(c)) if c.cert.status == CertStatus::Revoked => {
            actions.push(Action::ArchiveLocalFiles {
                dir: dir.clone(),
                reason: format!("certificate {} is REVOKED", c.cert.id),
            });
            actions.push(Action::CreateCertificate {
                dir: dir.clone(),
                reason: format!("replaces certificate {}, which is REVOKED", c.cert.id),
                key,
            });
            attach_all(&mut actions, CertRef::New);
            retire(&mut actions, d, o, c, false);
            for other in o
                .thing_certificates
                .iter()
                .filter(|t| t.cert.id != c.cert.id)
            {
                retire(&mut actions, d, o, other, true);
            }
        }
        (Some(_), Some(c)) => keep_existing(&mut actions, d, o, c)?,
    }
    Ok(actions)
}

#[cfg(test)]
mod tests;

/// The first steps of a rotation issue and activate the new certificate; the rest retire the
/// old one (so a verified rotation can run them in two phases).
pub const ROTATION_ISSUE_STEPS: usize = 5;

/// Rotate a station's certificate: archive the old files, issue and attach a new certificate,
/// activate it, then retire and delete the old one. The station must be in sync (apply first).
/// A crash at any point leaves either the old or the new certificate ACTIVE with its key on
/// disk or in the archive, which the next apply restores.
pub fn rotation(
    d: &DesiredIdentity,
    o: &ObservedIdentity,
    key: KeyMethod,
) -> Result<Vec<Action>, String> {
    let Some(old) = &o.local_certificate else {
        return Err(format!(
            "station {} has no certificate to rotate yet; run apply first",
            d.id
        ));
    };
    let mut actions = vec![
        Action::ArchiveLocalFiles {
            dir: d.cert_dir.clone(),
            reason: format!("rotation: certificate {} is replaced", old.cert.id),
        },
        Action::CreateCertificate {
            dir: d.cert_dir.clone(),
            reason: format!("rotation of certificate {}", old.cert.id),
            key,
        },
        Action::AttachThingPrincipal {
            thing: d.id.clone(),
            certificate: CertRef::New,
        },
        Action::AttachPolicy {
            policy: d.policy_name.clone(),
            certificate: CertRef::New,
        },
        Action::ActivateCertificate {
            certificate: CertRef::New,
            reason: "rotation".into(),
        },
    ];
    if old.cert.status == CertStatus::Active {
        actions.push(Action::DeactivateCertificate {
            certificate: existing(old),
            reason: "rotated out".into(),
        });
    }
    for p in &old.attached_policies {
        actions.push(Action::DetachPolicy {
            policy: p.clone(),
            certificate: existing(old),
        });
    }
    actions.push(Action::DetachThingPrincipal {
        thing: d.id.clone(),
        certificate: existing(old),
    });
    actions.push(Action::DeleteCertificate {
        certificate: existing(old),
    });
    Ok(actions)
}
