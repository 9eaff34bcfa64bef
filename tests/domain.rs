//! The custom MQTT domain against the sandbox: fresh apply, idempotence, each drift case, the
//! replace path, prune, an apply interrupted while waiting for ACM (killed, and crashed after
//! every AWS call), and a missing hosted zone.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{provision, provision_env, Fleet, Run, Sandbox, REGION};

const DOMAIN: &str = "mqtt-sandbox.example.com";
const CONFIG: &str = "solar-sandbox-mqtt";
const APPLY: &[&str] = &["apply", "--auto-approve"];

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

fn no_changes(s: &Sandbox, f: &Fleet) {
    let again = provision(Some(s), f.dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.starts_with("No changes."), "{again:?}");
    assert!(
        again
            .stdout
            .contains(&format!("Custom domain {DOMAIN} is in place")),
        "{again:?}"
    );
}

/// plan --detailed-exitcode says drift (2) and shows `expect`; apply repairs; plan says none.
fn drift_repaired(s: &Sandbox, f: &Fleet, expect: &str) {
    let plan = provision(Some(s), f.dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains(expect),
        "expected {expect:?} in the plan:\n{plan:?}"
    );
    assert!(
        !plan.stdout.contains("ACM certificate for"),
        "drift must not request a new certificate:\n{plan:?}"
    );
    ok(&provision(Some(s), f.dir.path(), APPLY));
    no_changes(s, f);
}

async fn with_zone() -> (Sandbox, Fleet, String) {
    let s = Sandbox::start();
    let zone = s.create_zone("example.com").await;
    (s, Fleet::example_with_domain(), zone)
}

async fn applied() -> (Sandbox, Fleet, String) {
    let (s, f, zone) = with_zone().await;
    ok(&provision(Some(&s), f.dir.path(), APPLY));
    (s, f, zone)
}

fn ats(s: &Sandbox, f: &Fleet) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.certs().join("endpoint.json")).unwrap())
            .unwrap();
    let _ = s;
    v["ats_endpoint"].as_str().unwrap().to_string()
}

/// The CNAME at `name` in the zone: (value without the trailing dot, TTL).
async fn cname(s: &Sandbox, zone: &str, name: &str) -> Option<(String, i64)> {
    let out = s
        .route53()
        .await
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .unwrap();
    out.resource_record_sets()
        .iter()
        .find(|r| {
            r.name().trim_end_matches('.') == name
                && *r.r#type() == aws_sdk_route53::types::RrType::Cname
        })
        .map(|r| {
            (
                r.resource_records()[0]
                    .value()
                    .trim_end_matches('.')
                    .to_string(),
                r.ttl().unwrap(),
            )
        })
}

async fn change_cname(
    s: &Sandbox,
    zone: &str,
    action: aws_sdk_route53::types::ChangeAction,
    name: &str,
    value: &str,
    ttl: i64,
) {
    use aws_sdk_route53::types::{Change, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
    let set = ResourceRecordSet::builder()
        .name(format!("{name}."))
        .r#type(RrType::Cname)
        .ttl(ttl)
        .resource_records(
            ResourceRecord::builder()
                .value(format!("{value}."))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    s.route53()
        .await
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(
            ChangeBatch::builder()
                .changes(
                    Change::builder()
                        .action(action)
                        .resource_record_set(set)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

async fn delete_cname(s: &Sandbox, zone: &str, name: &str) {
    let (value, ttl) = cname(s, zone, name).await.expect("the record exists");
    change_cname(
        s,
        zone,
        aws_sdk_route53::types::ChangeAction::Delete,
        name,
        &value,
        ttl,
    )
    .await;
    assert!(cname(s, zone, name).await.is_none());
}

/// Every ACM certificate in the account: (ARN, domain, status).
async fn acm_certs(s: &Sandbox) -> Vec<(String, String, String)> {
    let out = s.acm().await.list_certificates().send().await.unwrap();
    out.certificate_summary_list()
        .iter()
        .map(|c| {
            (
                c.certificate_arn().unwrap().to_string(),
                c.domain_name().unwrap().to_string(),
                c.status().unwrap().as_str().to_string(),
            )
        })
        .collect()
}

/// The validation record ACM asks for: (name, value), without trailing dots.
async fn validation_record(s: &Sandbox, arn: &str) -> (String, String) {
    let out = s
        .acm()
        .await
        .describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .unwrap();
    let r = out.certificate().unwrap().domain_validation_options()[0]
        .resource_record()
        .unwrap()
        .clone();
    (
        r.name().trim_end_matches('.').to_string(),
        r.value().trim_end_matches('.').to_string(),
    )
}

/// The domain is served as the file says: one ISSUED certificate of the fleet, its validation
/// record, the configuration ENABLED with it, and the CNAME to the ATS endpoint.
async fn check_domain(s: &Sandbox, f: &Fleet, zone: &str, name: &str) -> String {
    let certs: Vec<_> = acm_certs(s)
        .await
        .into_iter()
        .filter(|c| c.1 == name)
        .collect();
    assert_eq!(certs.len(), 1, "one certificate for {name}: {certs:?}");
    let (arn, _, status) = &certs[0];
    assert_eq!(status, "ISSUED");
    let tags = s
        .acm()
        .await
        .list_tags_for_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .unwrap();
    assert!(tags
        .tags()
        .iter()
        .any(|t| t.key() == "provision_fleet" && t.value() == Some("solar-sandbox")));
    let (rname, rvalue) = validation_record(s, arn).await;
    assert_eq!(cname(s, zone, &rname).await.map(|r| r.0), Some(rvalue));
    let c = s
        .iot()
        .await
        .describe_domain_configuration()
        .domain_configuration_name(CONFIG)
        .send()
        .await
        .unwrap();
    assert_eq!(c.domain_name(), Some(name));
    assert_eq!(c.domain_configuration_status().unwrap().as_str(), "ENABLED");
    assert_eq!(c.service_type().unwrap().as_str(), "DATA");
    assert_eq!(
        c.server_certificates()[0].server_certificate_arn(),
        Some(arn.as_str())
    );
    assert_eq!(
        c.tls_config().unwrap().security_policy(),
        Some("IoTSecurityPolicy_TLS13_1_2_2022_10")
    );
    assert_eq!(
        cname(s, zone, name).await.map(|r| r.0),
        Some(ats(s, f)),
        "CNAME to the ATS endpoint"
    );
    arn.clone()
}

#[tokio::test]
async fn fresh_apply_with_a_domain_then_no_changes() {
    let (s, f, zone) = with_zone().await;
    let d = f.dir.path();
    let plan = provision(Some(&s), d, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    for line in [
        &format!("# domain {DOMAIN}"),
        &format!("+ ACM certificate for {DOMAIN} (DNS validation, tagged provision_fleet=solar-sandbox"),
        "> wait until ACM has ISSUED the new certificate",
        &format!("+ domain configuration {CONFIG} (DATA, {DOMAIN}, the new certificate, IoTSecurityPolicy_TLS13_1_2_2022_10, ENABLED)"),
        &format!("+ CNAME {DOMAIN} -> "),
        "Plan: 19 to add, 3 to change, 0 to destroy.",
    ] {
        assert!(plan.stdout.contains(line), "{line:?} in\n{plan:?}");
    }
    assert!(acm_certs(&s).await.is_empty(), "plan must not request");
    let json = provision(Some(&s), d, &["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["custom_domain"], DOMAIN);
    assert_eq!(v["domains"][0]["name"], DOMAIN);
    let steps: Vec<&str> = v["domains"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "request_certificate",
            "upsert_validation_records",
            "wait_for_certificate",
            "create_domain_configuration",
            "upsert_cname"
        ]
    );

    let apply = provision(Some(&s), d, APPLY);
    ok(&apply);
    assert!(
        apply
            .stdout
            .contains("Apply complete! Resources: 19 added, 3 changed, 0 destroyed."),
        "{apply:?}"
    );
    assert!(
        apply.stderr.contains(&format!(
            "provision: waiting for ACM to issue the certificate for {DOMAIN}"
        )),
        "a visible status line while waiting: {apply:?}"
    );
    check_domain(&s, &f, &zone, DOMAIN).await;
    let endpoint: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.certs().join("endpoint.json")).unwrap())
            .unwrap();
    assert_eq!(endpoint["endpoint"], DOMAIN);
    assert_eq!(endpoint["source"], "custom_domain");
    assert_eq!(endpoint["port"], 8883);
    assert!(endpoint["ats_endpoint"]
        .as_str()
        .unwrap()
        .ends_with(&format!("-ats.iot.{REGION}.amazonaws.com.cn")));

    no_changes(&s, &f);
    let again = provision(Some(&s), d, APPLY);
    ok(&again);
    assert!(again.stdout.starts_with("No changes."), "{again:?}");
    assert_eq!(acm_certs(&s).await.len(), 1);
}

#[tokio::test]
async fn each_drift_is_detected_and_repaired() {
    let (s, f, zone) = applied().await;
    let arn = check_domain(&s, &f, &zone, DOMAIN).await;
    let iot = s.iot().await;

    // The validation record is gone (ACM needs it to renew).
    let (rname, _) = validation_record(&s, &arn).await;
    delete_cname(&s, &zone, &rname).await;
    drift_repaired(&s, &f, "+ validation CNAME of certificate ");

    // The CNAME is gone.
    delete_cname(&s, &zone, DOMAIN).await;
    drift_repaired(&s, &f, &format!("+ CNAME {DOMAIN} -> {}", ats(&s, &f)));

    // The CNAME points elsewhere.
    change_cname(
        &s,
        &zone,
        aws_sdk_route53::types::ChangeAction::Upsert,
        DOMAIN,
        "elsewhere.example.net",
        60,
    )
    .await;
    drift_repaired(
        &s,
        &f,
        &format!("~ CNAME {DOMAIN}: elsewhere.example.net -> {}", ats(&s, &f)),
    );

    // The configuration is DISABLED and its TLS policy changed.
    iot.update_domain_configuration()
        .domain_configuration_name(CONFIG)
        .domain_configuration_status(aws_sdk_iot::types::DomainConfigurationStatus::Disabled)
        .tls_config(
            aws_sdk_iot::types::TlsConfig::builder()
                .security_policy("IoTSecurityPolicy_TLS12_1_0_2016_01")
                .build(),
        )
        .send()
        .await
        .unwrap();
    drift_repaired(
        &s,
        &f,
        &format!("~ domain configuration {CONFIG}: DISABLED -> ENABLED, TLS policy IoTSecurityPolicy_TLS12_1_0_2016_01 -> IoTSecurityPolicy_TLS13_1_2_2022_10"),
    );

    // The configuration is gone.
    iot.update_domain_configuration()
        .domain_configuration_name(CONFIG)
        .domain_configuration_status(aws_sdk_iot::types::DomainConfigurationStatus::Disabled)
        .send()
        .await
        .unwrap();
    iot.delete_domain_configuration()
        .domain_configuration_name(CONFIG)
        .send()
        .await
        .unwrap();
    drift_repaired(
        &s,
        &f,
        &format!("+ domain configuration {CONFIG} (DATA, {DOMAIN}, certificate "),
    );
    assert_eq!(check_domain(&s, &f, &zone, DOMAIN).await, arn);
}

#[tokio::test]
async fn a_new_domain_name_is_a_safe_replace_and_prune_removes_the_old_one() {
    let (s, f, zone) = applied().await;
    let old = check_domain(&s, &f, &zone, DOMAIN).await;
    let new = "mqtt2-sandbox.example.com";
    f.write(&f.read().replace(DOMAIN, new));
    let plan = provision(Some(&s), f.dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains(&format!("-/+ domain configuration {CONFIG} (domain name {DOMAIN} -> {new}; AWS cannot change that in place: disable, delete, create with the new certificate")),
        "{plan:?}"
    );
    assert!(
        plan.stdout
            .contains("Plan: 4 to add, 0 to change, 1 to destroy."),
        "{plan:?}"
    );
    ok(&provision(Some(&s), f.dir.path(), APPLY));
    let again = provision(Some(&s), f.dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");
    check_domain(&s, &f, &zone, new).await;
    let endpoint = std::fs::read_to_string(f.certs().join("endpoint.json")).unwrap();
    assert!(endpoint.contains(new), "{endpoint}");

    // The old name's certificate and records are kept without --prune.
    assert!(acm_certs(&s).await.iter().any(|c| c.0 == old));
    assert!(cname(&s, &zone, DOMAIN).await.is_some());
    let prune = provision(Some(&s), f.dir.path(), &["plan", "--prune"]);
    ok(&prune);
    for line in [
        &format!("# domain {DOMAIN} (not in the fleet file: deleted by --prune)"),
        &format!("- delete CNAME {DOMAIN} -> "),
        "- delete ACM certificate ",
    ] {
        assert!(prune.stdout.contains(line), "{line:?} in {prune:?}");
    }
    ok(&provision(
        Some(&s),
        f.dir.path(),
        &["apply", "--prune", "--auto-approve"],
    ));
    assert!(!acm_certs(&s).await.iter().any(|c| c.0 == old));
    assert!(cname(&s, &zone, DOMAIN).await.is_none());
    check_domain(&s, &f, &zone, new).await;
}

#[tokio::test]
async fn removing_the_domain_deletes_nothing_without_prune() {
    let (s, f, zone) = applied().await;
    let arn = check_domain(&s, &f, &zone, DOMAIN).await;
    let stripped = Fleet::example().read();
    f.write(&stripped);
    let plan = provision(Some(&s), f.dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    ok(&provision(Some(&s), f.dir.path(), APPLY));
    assert_eq!(check_domain(&s, &f, &zone, DOMAIN).await, arn);
    // Stations go back to the ATS endpoint.
    let endpoint = std::fs::read_to_string(f.certs().join("endpoint.json")).unwrap();
    assert!(endpoint.contains("\"source\": \"ats\""), "{endpoint}");

    let prune = provision(
        Some(&s),
        f.dir.path(),
        &["apply", "--prune", "--auto-approve"],
    );
    ok(&prune);
    assert!(
        prune.stdout.contains(&format!(
            "- delete domain configuration {CONFIG} (disabled first)"
        )),
        "{prune:?}"
    );
    assert!(acm_certs(&s).await.is_empty());
    assert!(cname(&s, &zone, DOMAIN).await.is_none());
    let gone = s
        .iot()
        .await
        .describe_domain_configuration()
        .domain_configuration_name(CONFIG)
        .send()
        .await;
    assert!(gone.is_err());
    let again = provision(
        Some(&s),
        f.dir.path(),
        &["plan", "--prune", "--detailed-exitcode"],
    );
    assert_eq!(again.code, 0, "{again:?}");
}

#[tokio::test]
async fn an_apply_killed_while_waiting_continues_the_wait_next_time() {
    let s = Sandbox::start_with(&["--acm-validation-wait", "6"]);
    let zone = s.create_zone("example.com").await;
    let f = Fleet::example_with_domain();
    let mut child = Command::new(env!("CARGO_BIN_EXE_provision"))
        .args(APPLY)
        .current_dir(f.dir.path())
        .env("AWS_ENDPOINT_URL", &s.url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", f.dir.path().join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            f.dir.path().join("no-aws-credentials"),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("waiting for ACM to issue the certificate") {
            child.kill().unwrap(); // SIGKILL: as a crash would
            break;
        }
    }
    child.wait().unwrap();
    assert!(seen.contains("waiting for ACM"), "{seen}");
    let certs = acm_certs(&s).await;
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_eq!(certs[0].2, "PENDING_VALIDATION");

    let plan = provision(Some(&s), f.dir.path(), &["plan"]);
    ok(&plan);
    assert!(
        !plan.stdout.contains("+ ACM certificate"),
        "no second certificate: {plan:?}"
    );
    assert!(
        plan.stdout
            .contains("> wait until ACM has ISSUED certificate "),
        "{plan:?}"
    );
    ok(&provision(Some(&s), f.dir.path(), APPLY));
    assert_eq!(check_domain(&s, &f, &zone, DOMAIN).await, certs[0].0);
    no_changes(&s, &f);
}

/// Apply aborted right after its k-th AWS call, for every k of the domain's apply (stations
/// already in place), then a normal apply converges with one certificate and no changes.
#[tokio::test]
async fn crash_at_every_call_of_the_domain_apply() {
    let s = Sandbox::start_with(&["--acm-validation-wait", "0.5"]);
    // Crashes while reading the account change nothing: start where apply starts changing it
    // (its reads are the plan's, a fixed number of calls).
    let first = {
        let zone = s.create_zone("example.com").await;
        let f = Fleet::example();
        ok(&provision(Some(&s), f.dir.path(), APPLY));
        f.write(&Fleet::example_with_domain().read());
        s.reset_requests();
        ok(&provision(Some(&s), f.dir.path(), &["plan"]));
        let _ = zone;
        s.request_count()
    };
    let mut k = first;
    loop {
        s.reset();
        let zone = s.create_zone("example.com").await;
        let f = Fleet::example();
        ok(&provision(Some(&s), f.dir.path(), APPLY));
        f.write(&Fleet::example_with_domain().read());
        let k_str = k.to_string();
        let crashed = provision_env(
            Some(&s),
            f.dir.path(),
            APPLY,
            &[("PROVISION_FAULT_AFTER_CALLS", &k_str)],
        );
        if crashed.code == 0 {
            // Past the last call: every crash point was covered.
            assert!(k > first + 5, "only {} calls after the reads?", k - first);
            break;
        }
        assert!(
            crashed.stderr.contains("injected fault"),
            "k={k}: {crashed:?}"
        );
        let repair = provision(Some(&s), f.dir.path(), APPLY);
        assert_eq!(repair.code, 0, "k={k}: {repair:?}");
        check_domain(&s, &f, &zone, DOMAIN).await;
        assert_eq!(acm_certs(&s).await.len(), 1, "k={k}");
        let plan = provision(Some(&s), f.dir.path(), &["plan", "--detailed-exitcode"]);
        assert_eq!(plan.code, 0, "k={k}: {plan:?}");
        k += 1;
    }
    eprintln!("domain apply: crash points {first}..{}", k - 1);
}

#[test]
fn a_missing_hosted_zone_is_a_clear_error() {
    let s = Sandbox::start();
    let f = Fleet::example_with_domain();
    let plan = provision(Some(&s), f.dir.path(), &["plan"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stdout.contains(&format!("Error: domain {DOMAIN}: Route 53 has no public hosted zone named example.com in this account, so the records of domain {DOMAIN} cannot be written")),
        "{plan:?}"
    );
}
