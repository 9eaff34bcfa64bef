//! Unit tests of the pure diff, driven through the in-memory fake account: each drift case is
//! detected by plan and repaired by apply, and a second plan is empty.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::cloud::fake::FakeCloud;
use crate::cloud::{CertStatus, Cloud};
use crate::desired::{AwsContext, DesiredIdentity};
use crate::{apply, certstore, observed};

fn identity(root: &Path, id: &str, role: Role) -> DesiredIdentity {
    let mut attributes = BTreeMap::new();
    attributes.insert("provision_fleet".to_string(), "f".to_string());
    DesiredIdentity {
        id: id.into(),
        role,
        attributes,
        policy_name: format!("f-{id}"),
        policy: json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":format!("arn:aws-cn:iot:cn-northwest-1:123456789012:client/{id}")}]}),
        topics: BTreeMap::new(),
        cert_dir: root.join(id),
    }
}

fn desired(root: &Path) -> Desired {
    Desired {
        fleet: "f".into(),
        aws: AwsContext::new("cn-northwest-1", "123456789012"),
        identities: vec![
            identity(root, "stmain", Role::Platform),
            identity(root, "st000", Role::Station),
        ],
        warnings: Vec::new(),
        key_method: Default::default(),
        certificates_dir: root.to_path_buf(),
        domain: None,
    }
}

async fn plan_with(cloud: &FakeCloud, d: &Desired, opts: DiffOptions) -> Plan {
    let o = observed::observe(cloud, d, 4, opts.prune, &|| {})
        .await
        .unwrap();
    diff(d, &o, opts)
}

async fn plan(cloud: &FakeCloud, d: &Desired) -> Plan {
    plan_with(cloud, d, DiffOptions::default()).await
}

async fn apply_ok(cloud: &FakeCloud, p: &Plan) {
    let report = apply::apply(cloud, p, 4, &|_| {}).await;
    assert_eq!(report.failed().count(), 0, "{:?}", report.outcomes);
}

/// A converged fleet: returns the cloud and the tempdir holding the keys.
async fn converged() -> (FakeCloud, tempfile::TempDir, Desired) {
    let tmp = tempfile::tempdir().unwrap();
    let d = desired(tmp.path());
    let cloud = FakeCloud::new();
    let p = plan(&cloud, &d).await;
    apply_ok(&cloud, &p).await;
    assert!(!plan(&cloud, &d).await.has_changes());
    (cloud, tmp, d)
}

fn actions_of<'a>(p: &'a Plan, id: &str) -> Vec<&'a str> {
    p.changes
        .iter()
        .find(|c| c.id == id)
        .map(|c| {
            c.actions
                .iter()
                .map(|a| match a {
                    Action::CreateThing { .. } => "create_thing",
                    Action::UpdateThing { .. } => "update_thing",
                    Action::CreatePolicy { .. } => "create_policy",
                    Action::UpdatePolicy { .. } => "update_policy",
                    Action::ArchiveLocalFiles { .. } => "archive",
                    Action::CreateCertificate { .. } => "create_certificate",
                    Action::AttachThingPrincipal { .. } => "attach_thing",
                    Action::AttachPolicy { .. } => "attach_policy",
                    Action::DetachPolicy { .. } => "detach_policy",
                    Action::ActivateCertificate { .. } => "activate",
                    Action::DeactivateCertificate { .. } => "deactivate",
                    Action::DetachThingPrincipal { .. } => "detach_thing",
                    Action::DeleteCertificate { .. } => "delete_certificate",
                    Action::DeletePolicy { .. } => "delete_policy",
                    Action::DeleteThing { .. } => "delete_thing",
                    Action::RestoreLocalFiles { .. } => "restore",
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Repair with apply and check the fleet converged.
async fn repairs(cloud: &FakeCloud, d: &Desired, p: &Plan) {
    apply_ok(cloud, p).await;
    let again = plan(cloud, d).await;
    assert!(
        !again.has_changes() && again.problems.is_empty(),
        "{again:#?}"
    );
    // Invariant: every identity has exactly one ACTIVE certificate on its thing, carrying its
    // policy, and it is the one on disk.
    let s = cloud.state.lock().unwrap();
    for i in &d.identities {
        let active: Vec<_> = s.thing_principals[&i.id]
            .iter()
            .filter(|arn| {
                s.certificates
                    .values()
                    .any(|c| &c.arn == *arn && c.status == CertStatus::Active)
            })
            .collect();
        assert_eq!(active.len(), 1, "{}: {active:?}", i.id);
        assert_eq!(s.attached[active[0]], vec![i.policy_name.clone()]);
        let local = certstore::inspect(&i.cert_dir).unwrap();
        assert!(active[0].ends_with(local.certificate_id.as_ref().unwrap()));
        assert!(local.has_private_key);
    }
}

fn cert_arn(cloud: &FakeCloud, thing: &str) -> String {
    cloud.state.lock().unwrap().thing_principals[thing][0].clone()
}

#[tokio::test]
async fn fresh_fleet_plan_text() {
    let tmp = tempfile::tempdir().unwrap();
    let d = desired(tmp.path());
    let cloud = FakeCloud::new();
    let p = plan(&cloud, &d).await;
    assert_eq!(
        p.summary,
        Summary {
            add: 10,
            change: 2,
            destroy: 0
        }
    );
    let text = render_text(&p, false).replace(&tmp.path().display().to_string(), "<certs>");
    insta::assert_snapshot!(text);
    apply_ok(&cloud, &p).await;
    let again = plan(&cloud, &d).await;
    insta::assert_snapshot!(render_text(&again, false), @"No changes. Fleet f matches the account (2 identities checked).");
}

#[tokio::test]
async fn no_changes_means_no_writes() {
    let (cloud, _tmp, d) = converged().await;
    let before = cloud.calls().len();
    let p = plan(&cloud, &d).await;
    apply_ok(&cloud, &p).await;
    let calls = cloud.calls()[before..].to_vec();
    assert!(
        calls
            .iter()
            .all(|c| c.starts_with("List") || c.starts_with("Get") || c.starts_with("Describe")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn thing_missing() {
    let (cloud, _tmp, d) = converged().await;
    {
        let mut s = cloud.state.lock().unwrap();
        s.things.remove("st000");
        s.thing_principals.remove("st000");
    }
    let p = plan(&cloud, &d).await;
    assert_eq!(actions_of(&p, "st000"), ["create_thing", "attach_thing"]);
    repairs(&cloud, &d, &p).await;
}

#[tokio::test]
async fn attribute_changed() {
    let (cloud, _tmp, d) = converged().await;
    cloud
        .state
        .lock()
        .unwrap()
        .things
        .get_mut("st000")
        .unwrap()
        .attributes
        .insert("site".into(), "elsewhere".into());
    let p = plan(&cloud, &d).await;
    assert_eq!(actions_of(&p, "st000"), ["update_thing"]);
    repairs(&cloud, &d, &p).await;
}

#[tokio::test]
async fn certificate_detached_from_thing() {
    let (cloud, _tmp, d) = converged().await;
    cloud
        .state
        .lock()
        .unwrap()
        .thing_principals
        .get_mut("st000")
        .unwrap()
        .clear();
    let p = plan(&cloud, &d).await;
    assert_eq!(actions_of(&p, "st000"), ["attach_thing"]);
    repairs(&cloud, &d, &p).await;
}

#[tokio::test]
async fn certificate_inactive() {
    let (cloud, _tmp, d) = converged().await;
    let arn = cert_arn(&cloud, "st000");
    let id = arn.rsplit('/').next().unwrap().to_string();
    cloud
        .set_certificate_status(&id, CertStatus::Inactive)
        .await
        .unwrap();
    let p = plan(&cloud, &d).await;
    assert_eq!(actions_of(&p, "st000"), ["activate"]);
    repairs(&cloud, &d, &p).await;
}

#[tokio::test]
async fn certificate_revoked_is_replaced_and_old_files_archived() {
    let (cloud, tmp, d) = converged().await;
    let arn = cert_arn(&cloud, "st000");
    let id = arn.rsplit('/').next().unwrap().to_string();
    cloud
        .state
        .lock()
        .unwrap()
        .certificates
        .get_mut(&id)
        .unwrap()
        .status = CertStatus::Revoked;
    let p = plan(&cloud, &d).await;
    assert_eq!(
        actions_of(&p, "st000"),
        [
            "archive",
            "create_certificate",
            "attach_thing",
            "attach_policy",
            "activate",
            "detach_policy",
            "detach_thing"
        ]
    );
    repairs(&cloud, &d, &p).await;
    let archived = tmp.path().join(".archive").join("st000");
    assert_eq!(std::fs::read_dir(archived).unwrap().count(), 1);
}

#[tokio::test]
async fn policy_missing() {
    let (cloud, _tmp, d) = converged().await;
    cloud.delete_policy_out_of_band("f-st000");
    let p = plan(&cloud, &d).await;
    assert_eq!(actions_of(&p, "st000"), ["create_policy", "attach_policy"]);
    repairs(&cloud, &d, &p).await;
}

#[tokio::test]
async fn policy_edited_out_of_band_with_a_readable_diff() {
    let (cloud, _tmp, d) = converged().await;
    cloud.edit_policy("f-st000", r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws-cn:iot:cn-northwest-1:123456789012:client/*"}]}"#);
    let p = plan(&cloud, &d).await;
    assert_eq!(actions_of(&p, "st000"), ["update_policy"]);
    insta::assert_snapshot!(render_text(&p, false));
    repairs(&cloud, &d, &p).await;
}

#[tokio::test]
async fn policy_with_five_versions_loses_its_oldest_first() {
    let (cloud, _tmp, d) = converged().await;
    for i in 0..4 {
        cloud.edit_policy("f-st000", &format!(r#"{{"Version":"2012-10-17","v":{i}}}"#));
    }
    assert_eq!(cloud.policy_version_count("f-st000"), 5);
    let p = plan(&cloud, &d).await;
    match &p.changes[0].actions[0] {
        Action::UpdatePolicy { delete_version, .. } => {
            assert_eq!(delete_version.as_deref(), Some("1"))
        }
        other => panic!("{other:?}"),
    }
    repairs(&cloud, &d, &p).await;
    assert_eq!(cloud.policy_version_count("f-st000"), 5);
}

#[tokio::test]
async fn policy_detached_and_extra_policy_attached() {
    let (cloud, _tmp, d) = converged().await;
    let arn = cert_arn(&cloud, "st000");
    cloud
        .create_policy("wide-open", r#"{"Statement":[]}"#)
        .await
        .unwrap();
    cloud.detach_policy("f-st000", &arn).await.unwrap();
    cloud.attach_policy("wide-open", &arn).await.unwrap();
    let p = plan(&cloud, &d).await;
    assert_eq!(actions_of(&p, "st000"), ["attach_policy", "detach_policy"]);
    repairs(&cloud, &d, &p).await;
}

#[tokio::test]
async fn lost_key_is_a_problem_not_a_silent_second_certificate() {
    let (cloud, tmp, d) = converged().await;
    std::fs::remove_dir_all(tmp.path().join("st000")).unwrap();
    let p = plan(&cloud, &d).await;
    assert!(!p.has_changes());
    assert_eq!(p.problems.len(), 1);
    insta::assert_snapshot!(p.problems[0]
        .message
        .replace(&tmp.path().display().to_string(), "<certs>")
        .replace(&p.problems[0].message[12..76], "<id>"));
    // Opting in replaces it: new certificate, the old one deactivated and detached.
    let p = plan_with(
        &cloud,
        &d,
        DiffOptions {
            replace_missing_keys: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        actions_of(&p, "st000"),
        [
            "create_certificate",
            "attach_thing",
            "attach_policy",
            "activate",
            "deactivate",
            "detach_policy",
            "detach_thing"
        ]
    );
    repairs(&cloud, &d, &p).await;
}

#[tokio::test]
async fn incomplete_key_directory_is_a_problem() {
    let (cloud, tmp, d) = converged().await;
    std::fs::remove_file(tmp.path().join("st000").join("private.pem.key")).unwrap();
    let p = plan(&cloud, &d).await;
    assert_eq!(p.problems.len(), 1);
    assert!(
        p.problems[0].message.contains("has no private.pem.key"),
        "{}",
        p.problems[0].message
    );
}

#[tokio::test]
async fn crash_between_certificate_and_attach_is_repaired() {
    // The certificate exists (INACTIVE) and its files are saved, nothing attached yet.
    let tmp = tempfile::tempdir().unwrap();
    let d = desired(tmp.path());
    let cloud = FakeCloud::new();
    let cert = cloud.create_keys_and_certificate().await.unwrap();
    certstore::save_new(&tmp.path().join("st000"), &cert).unwrap();
    let p = plan(&cloud, &d).await;
    assert_eq!(
        actions_of(&p, "st000"),
        [
            "create_thing",
            "create_policy",
            "attach_thing",
            "attach_policy",
            "activate"
        ]
    );
    repairs(&cloud, &d, &p).await;
}

#[tokio::test]
async fn foreign_thing_is_never_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let d = desired(tmp.path());
    let cloud = FakeCloud::new();
    cloud.create_thing("st000", &BTreeMap::new()).await.unwrap();
    let p = plan(&cloud, &d).await;
    assert_eq!(p.problems.len(), 1);
    assert!(
        p.problems[0].message.contains("belongs to no fleet"),
        "{}",
        p.problems[0].message
    );
    assert!(p.changes.iter().all(|c| c.id != "st000"));
}

#[tokio::test]
async fn a_second_certificate_on_the_thing_is_retired() {
    let (cloud, _tmp, d) = converged().await;
    // An interrupted replacement (or an operator) left another ACTIVE certificate on the thing.
    let extra = cloud.create_keys_and_certificate().await.unwrap();
    cloud
        .attach_thing_principal("st000", &extra.arn)
        .await
        .unwrap();
    cloud.attach_policy("f-st000", &extra.arn).await.unwrap();
    cloud
        .set_certificate_status(&extra.id, CertStatus::Active)
        .await
        .unwrap();
    let p = plan(&cloud, &d).await;
    assert_eq!(
        actions_of(&p, "st000"),
        ["deactivate", "detach_policy", "detach_thing"]
    );
    repairs(&cloud, &d, &p).await;
}

#[tokio::test]
async fn csr_mode_keeps_the_key_local_and_checks_the_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = desired(tmp.path());
    d.key_method = crate::keygen::KeyMethod::Csr {
        algorithm: crate::keygen::KeyAlgorithm::EcP256,
    };
    let cloud = FakeCloud::new();
    let p = plan(&cloud, &d).await;
    assert!(render_text(&p, false).contains("local EC P-256 key saved once to"));
    repairs(&cloud, &d, &p).await;
    assert!(cloud
        .calls()
        .iter()
        .any(|c| c == "CreateCertificateFromCsr"));
    assert!(!cloud
        .calls()
        .iter()
        .any(|c| c == "CreateKeysAndCertificate"));
    let key = std::fs::read_to_string(tmp.path().join("st000/private.pem.key")).unwrap();
    assert!(key.contains("BEGIN PRIVATE KEY"));
}

#[tokio::test]
async fn removed_station_is_kept_without_prune_and_deleted_with_it() {
    let (cloud, tmp, mut d) = converged().await;
    cloud.edit_policy("f-st000", r#"{"Version":"2012-10-17","Statement":[]}"#);
    d.identities.retain(|i| i.id != "st000");
    let p = plan(&cloud, &d).await;
    assert!(!p.has_changes());
    assert_eq!(p.not_pruned, ["st000"]);
    assert!(render_text(&p, false).contains("Note: 1 owned thing(s) are not in the fleet file and are kept: st000. Run with --prune to delete them."));
    let prune = DiffOptions {
        prune: true,
        ..Default::default()
    };
    let p = plan_with(&cloud, &d, prune).await;
    assert_eq!(
        actions_of(&p, "st000"),
        [
            "archive",
            "detach_policy",
            "delete_policy",
            "deactivate",
            "detach_thing",
            "delete_certificate",
            "delete_thing"
        ]
    );
    assert_eq!(p.summary.destroy, 5);
    let arn = cert_arn(&cloud, "st000");
    let short = &arn.rsplit('/').next().unwrap()[..12];
    insta::assert_snapshot!(render_text(&p, false)
        .replace(&tmp.path().display().to_string(), "<certs>")
        .replace(short, "<id>"));
    apply_ok(&cloud, &p).await;
    {
        let s = cloud.state.lock().unwrap();
        assert!(!s.things.contains_key("st000"));
        assert_eq!(s.certificates.len(), 1, "only stmain's certificate is left");
    }
    assert!(cloud.default_document("f-st000").is_none());
    assert!(!tmp.path().join("st000").exists());
    assert!(
        tmp.path().join(".archive/st000").exists(),
        "keys archived, not deleted"
    );
    assert!(!plan_with(&cloud, &d, prune).await.has_changes());
}

#[tokio::test]
async fn prune_never_touches_things_it_does_not_own() {
    let (cloud, _tmp, d) = converged().await;
    let mut other = BTreeMap::new();
    other.insert("provision_fleet".to_string(), "another-fleet".to_string());
    cloud.create_thing("st999", &other).await.unwrap();
    cloud
        .create_thing("unmarked", &BTreeMap::new())
        .await
        .unwrap();
    let p = plan_with(
        &cloud,
        &d,
        DiffOptions {
            prune: true,
            ..Default::default()
        },
    )
    .await;
    assert!(!p.has_changes(), "{p:#?}");
}

#[tokio::test]
async fn rotation_replaces_the_certificate_and_deletes_the_old_one() {
    let (cloud, tmp, d) = converged().await;
    let old = cert_arn(&cloud, "st000");
    let o = observed::observe(&cloud, &d, 4, false, &|| {})
        .await
        .unwrap();
    let actions = rotation(&d.identities[1], &o.identities["st000"], Default::default()).unwrap();
    let p = Plan {
        changes: vec![IdentityPlan {
            id: "st000".into(),
            role: Role::Station,
            removal: false,
            actions,
        }],
        ..diff(&d, &o, DiffOptions::default())
    };
    assert_eq!(
        actions_of(&p, "st000"),
        [
            "archive",
            "create_certificate",
            "attach_thing",
            "attach_policy",
            "activate",
            "deactivate",
            "detach_policy",
            "detach_thing",
            "delete_certificate"
        ]
    );
    repairs(&cloud, &d, &p).await;
    assert_ne!(cert_arn(&cloud, "st000"), old);
    assert!(
        !cloud
            .state
            .lock()
            .unwrap()
            .certificates
            .values()
            .any(|c| c.arn == old),
        "old certificate deleted"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join(".archive/st000"))
            .unwrap()
            .count(),
        1
    );
}

#[tokio::test]
async fn an_archived_key_of_the_active_certificate_is_restored() {
    // A rotation interrupted right after archiving the old files.
    let (cloud, tmp, d) = converged().await;
    let moved = certstore::archive(&tmp.path().join("st000")).unwrap();
    let p = plan(&cloud, &d).await;
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(actions_of(&p, "st000"), ["restore"]);
    repairs(&cloud, &d, &p).await;
    assert!(!moved.exists());
}

/// The JSON plan, with what varies between runs (temp paths, certificate ids, digests) masked.
fn json_of(p: &Plan, tmp: &Path) -> String {
    let text = serde_json::to_string_pretty(p).unwrap();
    let text = text.replace(&tmp.display().to_string(), "<certs>");
    let mut out = String::new();
    for line in text.lines() {
        // 64-hex digests (certificate ids, fingerprints) and ARNs built on them.
        let mut l = line.to_string();
        while let Some(i) = l
            .find(|c: char| c.is_ascii_hexdigit())
            .and_then(|_| find_hex64(&l))
        {
            l.replace_range(i..i + 64, "<sha256>");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn find_hex64(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(63)).find(|&i| {
        b[i..i + 64]
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    })
}

#[tokio::test]
async fn json_plans_for_create_update_replace_noop_and_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = desired(tmp.path());
    let cloud = FakeCloud::new();
    let create = plan(&cloud, &d).await;
    insta::assert_snapshot!("json_create", json_of(&create, tmp.path()));
    apply_ok(&cloud, &create).await;
    insta::assert_snapshot!("json_noop", json_of(&plan(&cloud, &d).await, tmp.path()));
    cloud.edit_policy("f-st000", r#"{"Version":"2012-10-17","Statement":[]}"#);
    let update = plan(&cloud, &d).await;
    insta::assert_snapshot!("json_update", json_of(&update, tmp.path()));
    apply_ok(&cloud, &update).await;
    let arn = cert_arn(&cloud, "st000");
    let id = arn.rsplit('/').next().unwrap().to_string();
    cloud
        .state
        .lock()
        .unwrap()
        .certificates
        .get_mut(&id)
        .unwrap()
        .status = CertStatus::Revoked;
    let replace = plan(&cloud, &d).await;
    insta::assert_snapshot!("json_replace", json_of(&replace, tmp.path()));
    apply_ok(&cloud, &replace).await;
    std::fs::remove_dir_all(tmp.path().join("stmain")).unwrap();
    let error = plan(&cloud, &d).await;
    insta::assert_snapshot!("json_error", json_of(&error, tmp.path()));
}

#[test]
fn the_documented_plan_schema_is_current() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/plan.schema.json"
    ))
    .unwrap();
    let now = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
    assert!(committed == now, "docs/plan.schema.json is out of date: run `provision schema --plan > docs/plan.schema.json`");
}

#[tokio::test]
async fn a_failing_station_does_not_stop_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let d = desired(tmp.path());
    let cloud = FakeCloud::new();
    let p = plan(&cloud, &d).await;
    // Someone creates st000's policy between plan and apply: its CreatePolicy fails.
    cloud
        .create_policy("f-st000", r#"{"Statement":[]}"#)
        .await
        .unwrap();
    let report = apply::apply(&cloud, &p, 4, &|_| {}).await;
    let failed: Vec<_> = report.failed().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, "st000");
    assert_eq!(
        failed[0].done, 1,
        "the thing was created, then CreatePolicy failed"
    );
    assert!(failed[0]
        .error
        .as_deref()
        .unwrap()
        .contains("CreatePolicy failed: ResourceAlreadyExistsException"));
    let ok = report.outcomes.iter().find(|o| o.id == "stmain").unwrap();
    assert!(ok.error.is_none() && ok.done == ok.total);
}
