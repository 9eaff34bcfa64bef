//! Crash safety: `apply` killed (abort, as `kill -9`) right after its k-th AWS call, for every k,
//! then a normal `apply` must converge, with the fleet's invariants holding.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::{provision, provision_env, Fleet, Sandbox};

const IDS: [&str; 3] = ["stmain", "st000", "st001"];
const APPLY: &[&str] = &["apply", "--auto-approve"];
const PRUNE: &[&str] = &["apply", "--prune", "--auto-approve"];

fn pubkey(args: &[&str], file: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg(file)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?} {}", file.display());
    String::from_utf8(out.stdout).unwrap()
}

/// Every identity has exactly one ACTIVE certificate on its thing, carrying exactly its policy,
/// whose private key is on disk and matches it; no other ACTIVE certificate exists.
async fn check_invariants(s: &Sandbox, f: &Fleet, label: &str, ids: &[&str]) {
    let iot = s.iot().await;
    let certs = iot.list_certificates().page_size(250).send().await.unwrap();
    let status: BTreeMap<String, String> = certs
        .certificates()
        .iter()
        .map(|c| {
            (
                c.certificate_arn().unwrap().to_string(),
                c.status().unwrap().as_str().to_string(),
            )
        })
        .collect();
    let mut owned_active = BTreeSet::new();
    for &id in ids {
        let principals = iot
            .list_thing_principals()
            .thing_name(id)
            .send()
            .await
            .unwrap();
        let active: Vec<&String> = principals
            .principals()
            .iter()
            .filter(|p| status.get(*p).map(String::as_str) == Some("ACTIVE"))
            .collect();
        assert_eq!(
            active.len(),
            1,
            "{label}: {id} has {} ACTIVE certificates",
            active.len()
        );
        let arn = active[0];
        let policies = iot
            .list_attached_policies()
            .target(arn)
            .send()
            .await
            .unwrap();
        let names: Vec<&str> = policies
            .policies()
            .iter()
            .map(|p| p.policy_name().unwrap())
            .collect();
        assert_eq!(names, [format!("solar-sandbox-{id}")], "{label}: {id}");
        let dir = f.certs().join(id);
        let pem = std::fs::read_to_string(dir.join("certificate.pem.crt")).unwrap();
        let local = provision::certstore::fingerprint_pem(&pem).unwrap();
        assert!(
            arn.ends_with(&local),
            "{label}: {id}: local certificate {local} is not the active {arn}"
        );
        assert_eq!(
            pubkey(&["pkey", "-pubout", "-in"], &dir.join("private.pem.key")),
            pubkey(
                &["x509", "-pubkey", "-noout", "-in"],
                &dir.join("certificate.pem.crt")
            ),
            "{label}: {id}: the private key does not match the certificate"
        );
        owned_active.insert(arn.clone());
    }
    let all_active: BTreeSet<String> = status
        .iter()
        .filter(|(_, st)| st.as_str() == "ACTIVE")
        .map(|(a, _)| a.clone())
        .collect();
    assert_eq!(
        all_active, owned_active,
        "{label}: an ACTIVE certificate no station owns"
    );
}

/// For k = 1, 2, ...: set up, crash apply after call k, apply again, check. Returns the number
/// of crash points tried (the first k at which apply no longer crashes ends the loop).
type Setup = dyn for<'a> Fn(
    &'a Sandbox,
    &'a Fleet,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

async fn crash_everywhere(
    scenario: &str,
    args: &[&str],
    repair_args: &[&str],
    ids: &[&str],
    setup: &Setup,
) -> u32 {
    let s = Sandbox::start();
    for k in 1..200u32 {
        s.reset();
        let f = Fleet::example();
        setup(&s, &f).await;
        let k_str = k.to_string();
        let crashed = provision_env(
            Some(&s),
            f.dir.path(),
            args,
            &[("PROVISION_FAULT_AFTER_CALLS", &k_str)],
        );
        let label = format!("{scenario}, crash after call {k}");
        if crashed.code == 0 {
            check_invariants(&s, &f, &label, ids).await;
            return k - 1;
        }
        assert!(
            crashed.stderr.contains("injected fault"),
            "{label}: {crashed:?}"
        );
        let repair = provision(Some(&s), f.dir.path(), repair_args);
        assert_eq!(repair.code, 0, "{label}: {repair:?}");
        let plan = provision(
            Some(&s),
            f.dir.path(),
            &["plan", "--prune", "--detailed-exitcode"],
        );
        assert_eq!(plan.code, 0, "{label}: {plan:?}");
        check_invariants(&s, &f, &label, ids).await;
    }
    panic!("{scenario}: apply never finished");
}

#[tokio::test]
async fn crash_at_every_call_of_a_fresh_apply() {
    let points = crash_everywhere(
        "fresh fleet",
        APPLY,
        APPLY,
        &IDS,
        &|_, _| Box::pin(async {}),
    )
    .await;
    eprintln!("fresh fleet: {points} crash points tried");
    assert!(points >= 20, "only {points} crash points");
}

#[tokio::test]
async fn crash_at_every_call_of_a_repair() {
    // Converged, then drift: st000's certificate revoked (replace), st001's policy edited.
    let points = crash_everywhere("repair", APPLY, APPLY, &IDS, &|s, f| {
        Box::pin(async move {
            let run = provision(Some(s), f.dir.path(), &["apply", "--auto-approve"]);
            assert_eq!(run.code, 0, "{run:?}");
            let iot = s.iot().await;
            let pem = std::fs::read_to_string(f.certs().join("st000/certificate.pem.crt")).unwrap();
            let id = provision::certstore::fingerprint_pem(&pem).unwrap();
            iot.update_certificate()
                .certificate_id(id)
                .new_status(aws_sdk_iot::types::CertificateStatus::Revoked)
                .send()
                .await
                .unwrap();
            iot.create_policy_version()
                .policy_name("solar-sandbox-st001")
                .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#)
                .set_as_default(true)
                .send()
                .await
                .unwrap();
        })
    })
    .await;
    eprintln!("repair: {points} crash points tried");
    assert!(points >= 10, "only {points} crash points");
}

#[tokio::test]
async fn crash_at_every_call_in_csr_mode() {
    let points = crash_everywhere("csr mode", APPLY, APPLY, &IDS, &|_, f| {
        Box::pin(async move {
            f.write(
                &f.read()
                    .replace("  dir: certs", "  dir: certs\n  mode: csr"),
            );
        })
    })
    .await;
    eprintln!("csr mode: {points} crash points tried");
    assert!(points >= 20, "only {points} crash points");
}

#[tokio::test]
async fn crash_at_every_call_of_a_prune() {
    let points = crash_everywhere("prune", PRUNE, PRUNE, &["stmain", "st000"], &|s, f| {
        Box::pin(async move {
            let run = provision(Some(s), f.dir.path(), &["apply", "--auto-approve"]);
            assert_eq!(run.code, 0, "{run:?}");
            f.write(&f.read().replace("  - id: st001\n", ""));
        })
    })
    .await;
    eprintln!("prune: {points} crash points tried");
    assert!(points >= 10, "only {points} crash points");
    // (check_invariants also proves st001's certificate is no longer ACTIVE anywhere.)
}

#[tokio::test]
async fn crash_at_every_call_of_a_rotation() {
    // A rotation killed at any point is finished or undone by the next apply; never two ACTIVE
    // certificates, never a lost key (an archived key of the ACTIVE certificate is restored).
    let points = crash_everywhere(
        "rotation",
        &["rotate", "--station", "st000", "--auto-approve"],
        APPLY,
        &IDS,
        &|s, f| {
            Box::pin(async move {
                let run = provision(Some(s), f.dir.path(), &["apply", "--auto-approve"]);
                assert_eq!(run.code, 0, "{run:?}");
            })
        },
    )
    .await;
    eprintln!("rotation: {points} crash points tried");
    assert!(points >= 10, "only {points} crash points");
}
