//! Integration tests: the built binary against a private sandbox per test. Fresh apply,
//! idempotence, each drift case detected by plan (exit 2) and repaired by apply, files on disk,
//! and bad input that makes no AWS call at all.

mod common;

use common::{provision, Fleet, Run, Sandbox};

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

/// plan --detailed-exitcode says drift (2) and shows `expect`; apply repairs; plan says none (0).
fn drift_repaired(s: &Sandbox, f: &Fleet, expect: &str) {
    let plan = provision(Some(s), f.dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains(expect),
        "expected {expect:?} in the plan:\n{plan:?}"
    );
    ok(&provision(
        Some(s),
        f.dir.path(),
        &["apply", "--auto-approve"],
    ));
    let again = provision(Some(s), f.dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.starts_with("No changes."), "{again:?}");
}

fn applied() -> (Sandbox, Fleet) {
    let s = Sandbox::start();
    let f = Fleet::example();
    ok(&provision(
        Some(&s),
        f.dir.path(),
        &["apply", "--auto-approve"],
    ));
    (s, f)
}

fn local_cert_id(f: &Fleet, id: &str) -> String {
    let pem = std::fs::read_to_string(f.certs().join(id).join("certificate.pem.crt")).unwrap();
    provision::certstore::fingerprint_pem(&pem).unwrap()
}

fn cert_arn(id: &str) -> String {
    format!("arn:aws-cn:iot:cn-northwest-1:123456789012:cert/{id}")
}

#[test]
fn fresh_apply_then_no_changes() {
    let s = Sandbox::start();
    let f = Fleet::example();
    let d = f.dir.path();
    let validate = provision(Some(&s), d, &["validate"]);
    ok(&validate);
    assert_eq!(s.request_count(), 0, "validate must not call AWS");

    let plan = provision(Some(&s), d, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout
            .contains("Plan: 15 to add, 3 to change, 0 to destroy."),
        "{plan:?}"
    );
    assert!(
        !f.certs().join("st000").exists(),
        "plan must not write keys"
    );

    let apply = provision(Some(&s), d, &["apply", "--auto-approve"]);
    ok(&apply);
    assert!(
        apply
            .stdout
            .contains("Apply complete! Resources: 15 added, 3 changed, 0 destroyed."),
        "{apply:?}"
    );
    assert!(!apply.stdout.contains("PRIVATE KEY") && !apply.stderr.contains("PRIVATE KEY"));

    let again = provision(Some(&s), d, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.starts_with("No changes."), "{again:?}");
    let again = provision(Some(&s), d, &["apply", "--auto-approve"]);
    ok(&again);
    assert!(again.stdout.starts_with("No changes."), "{again:?}");

    for id in ["stmain", "st000", "st001"] {
        let dir = f.certs().join(id);
        for file in [
            "certificate.pem.crt",
            "private.pem.key",
            "public.pem.key",
            "AmazonRootCA1.pem",
        ] {
            assert!(dir.join(file).exists(), "{id}/{file}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("private.pem.key")), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let key = std::fs::read_to_string(dir.join("private.pem.key")).unwrap();
        assert!(key.contains("PRIVATE KEY"));
    }
}

#[test]
fn json_plan_is_documented_data() {
    let s = Sandbox::start();
    let f = Fleet::example();
    let run = provision(Some(&s), f.dir.path(), &["plan", "--json"]);
    ok(&run);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["fleet"], "solar-sandbox");
    assert_eq!(v["region"], "cn-northwest-1");
    assert_eq!(v["summary"]["add"], 15);
    assert_eq!(v["changes"][1]["id"], "st000");
    assert_eq!(v["changes"][1]["actions"][0]["action"], "create_thing");
    assert_eq!(
        v["changes"][1]["actions"][1]["document"]["Statement"][0]["Resource"],
        "arn:aws-cn:iot:cn-northwest-1:123456789012:client/st000"
    );
}

#[tokio::test]
async fn drift_thing_missing() {
    let (s, f) = applied();
    let iot = s.iot().await;
    let arn = cert_arn(&local_cert_id(&f, "st000"));
    iot.detach_thing_principal()
        .thing_name("st000")
        .principal(&arn)
        .send()
        .await
        .unwrap();
    iot.delete_thing().thing_name("st000").send().await.unwrap();
    drift_repaired(&s, &f, "+ thing st000");
}

#[tokio::test]
async fn drift_attribute_changed() {
    let (s, f) = applied();
    let iot = s.iot().await;
    let payload = aws_sdk_iot::types::AttributePayload::builder()
        .attributes("site", "plant-z")
        .merge(true)
        .build();
    iot.update_thing()
        .thing_name("st000")
        .attribute_payload(payload)
        .send()
        .await
        .unwrap();
    drift_repaired(&s, &f, "~ thing st000 attributes: provision_fleet=solar-sandbox, site=plant-z -> provision_fleet=solar-sandbox, site=plant-a");
}

#[tokio::test]
async fn drift_certificate_detached_from_thing() {
    let (s, f) = applied();
    let arn = cert_arn(&local_cert_id(&f, "st001"));
    s.iot()
        .await
        .detach_thing_principal()
        .thing_name("st001")
        .principal(&arn)
        .send()
        .await
        .unwrap();
    drift_repaired(&s, &f, "to thing st001");
}

#[tokio::test]
async fn drift_certificate_inactive() {
    let (s, f) = applied();
    let id = local_cert_id(&f, "st000");
    s.iot()
        .await
        .update_certificate()
        .certificate_id(&id)
        .new_status(aws_sdk_iot::types::CertificateStatus::Inactive)
        .send()
        .await
        .unwrap();
    drift_repaired(&s, &f, "(certificate is INACTIVE)");
}

#[tokio::test]
async fn drift_certificate_revoked_is_replaced() {
    let (s, f) = applied();
    let id = local_cert_id(&f, "st000");
    s.iot()
        .await
        .update_certificate()
        .certificate_id(&id)
        .new_status(aws_sdk_iot::types::CertificateStatus::Revoked)
        .send()
        .await
        .unwrap();
    drift_repaired(&s, &f, "is REVOKED");
    assert_ne!(
        local_cert_id(&f, "st000"),
        id,
        "a new certificate is on disk"
    );
    let archived = std::fs::read_dir(f.certs().join(".archive").join("st000"))
        .unwrap()
        .count();
    assert_eq!(archived, 1, "the old key is archived, not deleted");
}

#[tokio::test]
async fn drift_policy_missing() {
    let (s, f) = applied();
    let iot = s.iot().await;
    let arn = cert_arn(&local_cert_id(&f, "st000"));
    iot.detach_policy()
        .policy_name("solar-sandbox-st000")
        .target(&arn)
        .send()
        .await
        .unwrap();
    iot.delete_policy()
        .policy_name("solar-sandbox-st000")
        .send()
        .await
        .unwrap();
    drift_repaired(&s, &f, "+ policy solar-sandbox-st000");
}

#[tokio::test]
async fn drift_policy_edited_out_of_band() {
    let (s, f) = applied();
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#;
    s.iot()
        .await
        .create_policy_version()
        .policy_name("solar-sandbox-st001")
        .policy_document(doc)
        .set_as_default(true)
        .send()
        .await
        .unwrap();
    drift_repaired(&s, &f, "~ policy solar-sandbox-st001: new default version");
}

#[tokio::test]
async fn drift_policy_detached() {
    let (s, f) = applied();
    let arn = cert_arn(&local_cert_id(&f, "stmain"));
    s.iot()
        .await
        .detach_policy()
        .policy_name("solar-sandbox-stmain")
        .target(&arn)
        .send()
        .await
        .unwrap();
    drift_repaired(
        &s,
        &f,
        "+ attach policy solar-sandbox-stmain to certificate",
    );
}

#[tokio::test]
async fn drift_local_key_missing_is_reported_never_reminted() {
    let (s, f) = applied();
    let dir = f.certs().join("st000");
    let moved = f.dir.path().join("st000-elsewhere");
    std::fs::rename(&dir, &moved).unwrap();
    let plan = provision(Some(&s), f.dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stdout.contains("its private key is not in"),
        "{plan:?}"
    );
    let apply = provision(Some(&s), f.dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(!dir.exists(), "no second certificate was minted");
    std::fs::rename(&moved, &dir).unwrap();
    ok(&provision(
        Some(&s),
        f.dir.path(),
        &["plan", "--detailed-exitcode"],
    ));
}

#[test]
fn bad_input_exits_1_naming_file_line_station_and_makes_no_call() {
    let s = Sandbox::start();
    let f = Fleet::example();
    f.write(
        &f.read()
            .replace("  - id: st001\n", "  - id: st001\n  - id: st000\n"),
    );
    for cmd in [&["validate"][..], &["plan"], &["apply", "--auto-approve"]] {
        let run = provision(Some(&s), f.dir.path(), cmd);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("stations.yaml:19:9: station st000: duplicate id \"st000\" (first defined at line 16)"), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    assert_eq!(s.request_count(), 0, "no AWS call may be made on bad input");
    assert!(!f.certs().exists(), "nothing written");
}

#[test]
fn template_error_makes_no_call() {
    let s = Sandbox::start();
    let f = Fleet::example();
    std::fs::write(
        f.dir.path().join("templates/station-policy.json.j2"),
        "{\"x\": \"{{ station.idd }}\"}",
    )
    .unwrap();
    let run = provision(Some(&s), f.dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("station-policy.json.j2:1: station st000: undefined value"),
        "{run:?}"
    );
    assert_eq!(s.request_count(), 0);
}

#[test]
fn unwritable_key_dir_fails_before_any_call() {
    let s = Sandbox::start();
    let f = Fleet::example();
    std::fs::write(f.certs(), "not a directory").unwrap();
    let run = provision(Some(&s), f.dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("is not writable; nothing was changed"),
        "{run:?}"
    );
    assert_eq!(s.request_count(), 0);
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let s = Sandbox::start();
    let f = Fleet::example();
    let run = provision(Some(&s), f.dir.path(), &["apply"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("--auto-approve"), "{run:?}");
    assert_eq!(s.request_count(), 0);
}

#[test]
fn unreachable_endpoint_is_a_clear_error() {
    let f = Fleet::example();
    let run = provision(None, f.dir.path(), &["plan"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("error: cannot identify the AWS account"),
        "{run:?}"
    );
}

#[test]
fn csr_mode_certifies_the_local_key() {
    let s = Sandbox::start();
    let f = Fleet::example();
    f.write(&f.read().replace(
        "  dir: certs",
        "  dir: certs\n  mode: csr\n  key_algorithm: rsa-2048",
    ));
    let plan = provision(Some(&s), f.dir.path(), &["plan"]);
    assert!(
        plan.stdout
            .contains("local RSA 2048 key saved once to certs/st000, CSR signed by AWS IoT"),
        "{plan:?}"
    );
    ok(&provision(
        Some(&s),
        f.dir.path(),
        &["apply", "--auto-approve"],
    ));
    ok(&provision(
        Some(&s),
        f.dir.path(),
        &["plan", "--detailed-exitcode"],
    ));
    for id in ["stmain", "st000", "st001"] {
        let dir = f.certs().join(id);
        let key = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(dir.join("private.pem.key"))
            .output()
            .unwrap();
        let cert = std::process::Command::new("openssl")
            .args(["x509", "-pubkey", "-noout", "-in"])
            .arg(dir.join("certificate.pem.crt"))
            .output()
            .unwrap();
        assert!(key.status.success() && cert.status.success());
        assert_eq!(
            key.stdout, cert.stdout,
            "{id}: the certificate must carry the local key"
        );
        assert!(String::from_utf8_lossy(&key.stdout).contains("PUBLIC KEY"));
    }
}

#[tokio::test]
async fn removed_station_is_pruned_only_with_prune() {
    let (s, f) = applied();
    let id = local_cert_id(&f, "st001");
    // An edited policy has two versions: prune must delete the old one first.
    s.iot()
        .await
        .create_policy_version()
        .policy_name("solar-sandbox-st001")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .set_as_default(true)
        .send()
        .await
        .unwrap();
    f.write(&f.read().replace("  - id: st001\n", ""));
    let plan = provision(Some(&s), f.dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout
            .contains("kept: st001. Run with --prune to delete them."),
        "{plan:?}"
    );
    ok(&provision(
        Some(&s),
        f.dir.path(),
        &["apply", "--auto-approve"],
    ));
    assert!(
        f.certs().join("st001").exists(),
        "nothing removed without --prune"
    );

    let plan = provision(
        Some(&s),
        f.dir.path(),
        &["plan", "--prune", "--detailed-exitcode"],
    );
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("- delete thing st001"), "{plan:?}");
    ok(&provision(
        Some(&s),
        f.dir.path(),
        &["apply", "--prune", "--auto-approve"],
    ));
    let iot = s.iot().await;
    assert!(
        iot.describe_thing()
            .thing_name("st001")
            .send()
            .await
            .is_err(),
        "thing deleted"
    );
    assert!(
        iot.get_policy()
            .policy_name("solar-sandbox-st001")
            .send()
            .await
            .is_err(),
        "policy deleted"
    );
    assert!(
        iot.describe_certificate()
            .certificate_id(&id)
            .send()
            .await
            .is_err(),
        "certificate deleted"
    );
    assert!(
        iot.describe_thing()
            .thing_name("st000")
            .send()
            .await
            .is_ok(),
        "others kept"
    );
    assert!(!f.certs().join("st001").exists());
    let archived = f.certs().join(".archive/st001");
    let kept: Vec<_> = std::fs::read_dir(&archived).unwrap().collect();
    assert_eq!(kept.len(), 1, "keys archived, never deleted");
    let again = provision(
        Some(&s),
        f.dir.path(),
        &["plan", "--prune", "--detailed-exitcode"],
    );
    assert_eq!(again.code, 0, "{again:?}");
}

#[tokio::test]
async fn rotate_issues_a_new_certificate_and_deletes_the_old() {
    let (s, f) = applied();
    let old = local_cert_id(&f, "st000");
    let run = provision(
        Some(&s),
        f.dir.path(),
        &["rotate", "--station", "st000", "--auto-approve"],
    );
    ok(&run);
    assert!(run.stdout.contains("- delete certificate"), "{run:?}");
    let new = local_cert_id(&f, "st000");
    assert_ne!(old, new);
    let iot = s.iot().await;
    assert!(
        iot.describe_certificate()
            .certificate_id(&old)
            .send()
            .await
            .is_err(),
        "old certificate deleted"
    );
    let d = iot
        .describe_certificate()
        .certificate_id(&new)
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.certificate_description()
            .unwrap()
            .status()
            .unwrap()
            .as_str(),
        "ACTIVE"
    );
    assert_eq!(
        std::fs::read_dir(f.certs().join(".archive/st000"))
            .unwrap()
            .count(),
        1,
        "old key archived"
    );
    ok(&provision(
        Some(&s),
        f.dir.path(),
        &["plan", "--detailed-exitcode"],
    ));
    let unknown = provision(
        Some(&s),
        f.dir.path(),
        &["rotate", "--station", "st999", "--auto-approve"],
    );
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .contains("station st999 is not in stations.yaml"),
        "{unknown:?}"
    );
}
