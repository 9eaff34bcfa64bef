//! Unit tests of the domain diff and its apply, on the in-memory fake account: fresh setup, each
//! drift case, the replace path, prune, and a failed certificate.

use std::time::Duration;

use super::*;
use crate::cloud::fake::{fake_ats_endpoint, fake_validation_record, FakeCloud};
use crate::cloud::Cloud;
use crate::config::ZoneRef;
use crate::domain::apply::{apply_domains, WaitOptions};
use crate::plan::{Plan, Summary};

const NAME: &str = "mqtt.example.com";
const CONFIG: &str = "f-mqtt";

fn spec() -> DomainSpec {
    DomainSpec {
        name: NAME.into(),
        zone: ZoneRef::Name("example.com".into()),
        configuration: CONFIG.into(),
        tls_policy: "IoTSecurityPolicy_TLS13_1_2_2022_10".into(),
        location: None,
    }
}

fn cloud() -> (FakeCloud, String) {
    let c = FakeCloud::new();
    let zone = c.add_zone("example.com");
    (c, zone)
}

async fn plan_of(cloud: &FakeCloud, spec: Option<&DomainSpec>, prune: bool) -> Plan {
    let observed = crate::domain::observe(cloud, "f", spec, prune)
        .await
        .unwrap();
    let (domains, problems) = diff_domain("f", spec, observed.as_ref(), prune);
    let mut summary = Summary::default();
    summary.add_domains(&domains);
    Plan {
        format_version: 1,
        fleet: "f".into(),
        account_id: "123456789012".into(),
        region: "cn-northwest-1".into(),
        changes: Vec::new(),
        unchanged: Vec::new(),
        problems,
        not_pruned: Vec::new(),
        domains,
        custom_domain: spec.map(|s| s.name.clone()),
        ats_endpoint: observed.map(|o| o.ats_endpoint),
        scope: Default::default(),
        fingerprint: Default::default(),
        summary,
    }
}

fn steps(p: &Plan) -> Vec<&'static str> {
    p.domains
        .iter()
        .flat_map(|d| d.actions.iter())
        .map(|a| match a {
            DomainAction::RequestCertificate { .. } => "request",
            DomainAction::UpsertValidationRecords { .. } => "validation",
            DomainAction::WaitForCertificate { .. } => "wait",
            DomainAction::CreateDomainConfiguration { .. } => "create_config",
            DomainAction::UpdateDomainConfiguration { .. } => "update_config",
            DomainAction::ReplaceDomainConfiguration { .. } => "replace_config",
            DomainAction::UpsertCname { .. } => "cname",
            DomainAction::DeleteDomainConfiguration { .. } => "delete_config",
            DomainAction::DeleteRecord { .. } => "delete_record",
            DomainAction::DeleteCertificate { .. } => "delete_certificate",
        })
        .collect()
}

fn quiet(_: &str) {}

fn wait_opts() -> WaitOptions<'static> {
    WaitOptions {
        timeout: Duration::from_secs(2),
        poll: Duration::from_millis(5),
        max_poll: Duration::from_millis(20),
        progress_every: Duration::from_secs(10),
        on_progress: &quiet,
    }
}

async fn apply_ok(cloud: &FakeCloud, p: &Plan) {
    let (outcomes, _) = apply_domains(cloud, &p.domains, wait_opts()).await;
    assert!(outcomes.iter().all(|o| o.error.is_none()), "{outcomes:#?}");
}

/// Plan shows `expect`, apply repairs, the next plan is empty.
async fn repaired(cloud: &FakeCloud, expect: &[&str]) {
    let p = plan_of(cloud, Some(&spec()), false).await;
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(steps(&p), expect);
    apply_ok(cloud, &p).await;
    let again = plan_of(cloud, Some(&spec()), false).await;
    assert!(!again.has_changes(), "{:#?}", again.domains);
}

async fn converged() -> (FakeCloud, String) {
    let (cloud, zone) = cloud();
    repaired(
        &cloud,
        &["request", "validation", "wait", "create_config", "cname"],
    )
    .await;
    (cloud, zone)
}

fn the_cert(cloud: &FakeCloud) -> String {
    let s = cloud.state.lock().unwrap();
    assert_eq!(s.acm.len(), 1, "{:?}", s.acm);
    s.acm.keys().next().unwrap().clone()
}

#[tokio::test]
async fn fresh_domain_is_set_up_in_order_and_then_unchanged() {
    let (cloud, zone) = converged().await;
    let arn = the_cert(&cloud);
    let s = cloud.state.lock().unwrap();
    let cert = &s.acm[&arn];
    assert_eq!(cert.status, "ISSUED");
    assert_eq!(cert.tags["provision_fleet"], "f");
    assert_eq!(cert.tags["provision_domain_configuration"], CONFIG);
    assert_eq!(cert.tags["provision_hosted_zone"], zone);
    let c = &s.domain_configurations[CONFIG];
    assert_eq!(c.status, "ENABLED");
    assert_eq!(c.certificate_arns, std::slice::from_ref(&arn));
    assert_eq!(c.domain_name, NAME);
    assert_eq!(
        s.zones[&zone].cnames[NAME].value,
        fake_ats_endpoint().to_lowercase()
    );
}

#[tokio::test]
async fn no_domain_and_no_prune_makes_no_domain_call() {
    let (cloud, _) = cloud();
    let p = plan_of(&cloud, None, false).await;
    assert!(!p.has_changes());
    assert!(cloud.calls().is_empty(), "{:?}", cloud.calls());
}

#[tokio::test]
async fn an_interrupted_request_is_found_by_its_tags_not_requested_again() {
    let (cloud, _) = cloud();
    let p = plan_of(&cloud, Some(&spec()), false).await;
    // Only the request ran (then the process died).
    let first = Plan {
        domains: vec![DomainPlan {
            actions: p.domains[0].actions[..1].to_vec(),
            ..p.domains[0].clone()
        }],
        ..p.clone()
    };
    apply_ok(&cloud, &first).await;
    repaired(&cloud, &["validation", "wait", "create_config", "cname"]).await;
    the_cert(&cloud);
}

#[tokio::test]
async fn the_same_token_returns_the_same_certificate() {
    let (cloud, _) = cloud();
    let p = plan_of(&cloud, Some(&spec()), false).await;
    // The request was made but the answer lost: the retry (same plan) gets the same certificate.
    apply_ok(
        &cloud,
        &Plan {
            domains: vec![DomainPlan {
                actions: p.domains[0].actions[..1].to_vec(),
                ..p.domains[0].clone()
            }],
            ..p.clone()
        },
    )
    .await;
    apply_ok(&cloud, &p).await;
    the_cert(&cloud);
}

#[tokio::test]
async fn drift_validation_record_missing() {
    let (cloud, zone) = converged().await;
    let r = fake_validation_record(NAME);
    cloud
        .state
        .lock()
        .unwrap()
        .zones
        .get_mut(&zone)
        .unwrap()
        .cnames
        .remove(&r.name);
    repaired(&cloud, &["validation"]).await;
}

#[tokio::test]
async fn drift_cname_missing_or_elsewhere() {
    let (cloud, zone) = converged().await;
    cloud
        .state
        .lock()
        .unwrap()
        .zones
        .get_mut(&zone)
        .unwrap()
        .cnames
        .remove(NAME);
    repaired(&cloud, &["cname"]).await;
    cloud
        .upsert_cname(&zone, NAME, "elsewhere.example.net")
        .await
        .unwrap();
    let p = plan_of(&cloud, Some(&spec()), false).await;
    assert!(matches!(
        &p.domains[0].actions[0],
        DomainAction::UpsertCname { before: Some(b), .. } if b == "elsewhere.example.net"
    ));
    assert_eq!(p.summary.change, 1);
    repaired(&cloud, &["cname"]).await;
}

#[tokio::test]
async fn drift_configuration_disabled_or_tls_policy_changed() {
    let (cloud, _) = converged().await;
    cloud
        .update_domain_configuration(
            CONFIG,
            Some(false),
            Some("IoTSecurityPolicy_TLS12_1_0_2016_01"),
        )
        .await
        .unwrap();
    let p = plan_of(&cloud, Some(&spec()), false).await;
    let text = crate::plan::render_text(&p, false);
    assert!(
        text.contains("~ domain configuration f-mqtt: DISABLED -> ENABLED, TLS policy IoTSecurityPolicy_TLS12_1_0_2016_01 -> IoTSecurityPolicy_TLS13_1_2_2022_10"),
        "{text}"
    );
    repaired(&cloud, &["update_config"]).await;
}

#[tokio::test]
async fn drift_configuration_missing() {
    let (cloud, _) = converged().await;
    cloud
        .state
        .lock()
        .unwrap()
        .domain_configurations
        .remove(CONFIG);
    repaired(&cloud, &["create_config"]).await;
}

#[tokio::test]
async fn another_certificate_on_the_configuration_is_replaced_safely() {
    let (cloud, _) = converged().await;
    let ours = the_cert(&cloud);
    // Out of band: the configuration now serves someone else's certificate.
    {
        let mut s = cloud.state.lock().unwrap();
        s.acm.insert(
            "arn:other".into(),
            crate::cloud::fake::FakeAcmCert {
                domain_name: NAME.into(),
                status: "ISSUED".into(),
                tags: Default::default(),
            },
        );
        s.domain_configurations
            .get_mut(CONFIG)
            .unwrap()
            .certificate_arns = vec!["arn:other".into()];
    }
    let p = plan_of(&cloud, Some(&spec()), false).await;
    assert_eq!(steps(&p), ["replace_config"]);
    assert_eq!((p.summary.add, p.summary.destroy), (1, 1));
    let text = crate::plan::render_text(&p, false);
    assert!(
        text.contains("-/+ domain configuration f-mqtt (server certificate arn:other -> "),
        "{text}"
    );
    let before = cloud.calls().len();
    repaired(&cloud, &["replace_config"]).await;
    let calls = cloud.calls()[before..].to_vec();
    let order: Vec<&str> = calls
        .iter()
        .map(String::as_str)
        .filter(|c| c.contains("DomainConfiguration") && !c.starts_with("Describe"))
        .collect();
    assert_eq!(
        order,
        [
            "UpdateDomainConfiguration",
            "DeleteDomainConfiguration",
            "CreateDomainConfiguration"
        ],
        "disable, delete, create"
    );
    assert_eq!(
        cloud.state.lock().unwrap().domain_configurations[CONFIG].certificate_arns,
        [ours]
    );
}

#[tokio::test]
async fn a_new_domain_name_replaces_the_configuration_and_prune_cleans_the_old_name() {
    let (cloud, zone) = converged().await;
    let old = the_cert(&cloud);
    let renamed = DomainSpec {
        name: "mqtt2.example.com".into(),
        ..spec()
    };
    let p = plan_of(&cloud, Some(&renamed), false).await;
    assert_eq!(
        steps(&p),
        ["request", "validation", "wait", "replace_config", "cname"]
    );
    apply_ok(&cloud, &p).await;
    assert!(!plan_of(&cloud, Some(&renamed), false).await.has_changes());
    // The old name's certificate and records are kept without --prune, deleted with it.
    let p = plan_of(&cloud, Some(&renamed), true).await;
    assert_eq!(
        steps(&p),
        ["delete_record", "delete_record", "delete_certificate"]
    );
    assert!(p.domains[0].removal);
    apply_ok(&cloud, &p).await;
    let s = cloud.state.lock().unwrap();
    assert!(!s.acm.contains_key(&old));
    assert!(!s.zones[&zone].cnames.contains_key(NAME));
    assert!(s.zones[&zone].cnames.contains_key("mqtt2.example.com"));
}

#[tokio::test]
async fn removing_the_domain_deletes_only_with_prune() {
    let (cloud, zone) = converged().await;
    assert!(!plan_of(&cloud, None, false).await.has_changes());
    let p = plan_of(&cloud, None, true).await;
    assert_eq!(
        steps(&p),
        [
            "delete_config",
            "delete_record",
            "delete_record",
            "delete_certificate"
        ]
    );
    insta::assert_snapshot!(
        "domain_removed_with_prune",
        crate::plan::render_text(&p, false)
    );
    apply_ok(&cloud, &p).await;
    let s = cloud.state.lock().unwrap();
    assert!(s.acm.is_empty());
    assert!(s.domain_configurations.is_empty());
    assert!(s.zones[&zone].cnames.is_empty());
}

#[tokio::test]
async fn a_timed_out_certificate_is_a_clear_error_then_a_new_request() {
    let (cloud, _) = cloud();
    let p = plan_of(&cloud, Some(&spec()), false).await;
    // Only the request: ACM then gives up on validation.
    apply_ok(
        &cloud,
        &Plan {
            domains: vec![DomainPlan {
                actions: p.domains[0].actions[..1].to_vec(),
                ..p.domains[0].clone()
            }],
            ..p.clone()
        },
    )
    .await;
    let arn = the_cert(&cloud);
    cloud
        .state
        .lock()
        .unwrap()
        .acm
        .get_mut(&arn)
        .unwrap()
        .status = "VALIDATION_TIMED_OUT".into();
    let wait = Plan {
        domains: vec![DomainPlan {
            name: NAME.into(),
            removal: false,
            actions: vec![DomainAction::WaitForCertificate {
                certificate: AcmRef::Existing { arn: arn.clone() },
                domain: NAME.into(),
                status: "PENDING_VALIDATION".into(),
            }],
        }],
        ..p.clone()
    };
    let (outcomes, _) = apply_domains(&cloud, &wait.domains, wait_opts()).await;
    let err = outcomes[0].error.clone().unwrap();
    assert!(
        err.contains(&format!(
            "ACM certificate {arn} for {NAME} is VALIDATION_TIMED_OUT"
        )),
        "{err}"
    );
    // The next plan requests a new certificate with a new token, naming why.
    let p = plan_of(&cloud, Some(&spec()), false).await;
    match &p.domains[0].actions[0] {
        DomainAction::RequestCertificate {
            reason,
            idempotency_token,
            ..
        } => {
            assert!(reason.contains("VALIDATION_TIMED_OUT"), "{reason}");
            assert_eq!(
                idempotency_token,
                &crate::domain::idempotency_token("f", NAME, 1)
            );
        }
        other => panic!("{other:?}"),
    }
    apply_ok(&cloud, &p).await;
    assert!(!plan_of(&cloud, Some(&spec()), false).await.has_changes());
}

#[tokio::test]
async fn waiting_too_long_is_an_error_naming_the_record() {
    let (cloud, zone) = cloud();
    let p = plan_of(&cloud, Some(&spec()), false).await;
    // The validation record never lands (say, the zone is not the delegated one).
    let no_records: Vec<DomainAction> = p.domains[0]
        .actions
        .iter()
        .filter(|a| !matches!(a, DomainAction::UpsertValidationRecords { .. }))
        .cloned()
        .collect();
    let opts = WaitOptions {
        timeout: Duration::from_millis(50),
        ..wait_opts()
    };
    let (outcomes, _) = apply_domains(
        &cloud,
        &[DomainPlan {
            actions: no_records,
            ..p.domains[0].clone()
        }],
        opts,
    )
    .await;
    let err = outcomes[0].error.clone().unwrap();
    assert!(err.contains("is still PENDING_VALIDATION after"), "{err}");
    assert!(err.contains(&fake_validation_record(NAME).name), "{err}");
    assert_eq!(outcomes[0].done, 1);
    // The next apply continues: the records, the wait, the rest; no second certificate.
    let _ = zone;
    repaired(&cloud, &["validation", "wait", "create_config", "cname"]).await;
    the_cert(&cloud);
}

#[tokio::test]
async fn a_missing_zone_is_a_problem_naming_it() {
    let cloud = FakeCloud::new();
    let p = plan_of(&cloud, Some(&spec()), false).await;
    assert!(!p.has_changes());
    assert_eq!(p.problems.len(), 1);
    assert_eq!(p.problems[0].id, "domain mqtt.example.com");
    assert!(
        p.problems[0]
            .message
            .contains("Route 53 has no public hosted zone named example.com"),
        "{:?}",
        p.problems
    );
    let text = crate::plan::render_text(&p, false);
    assert!(
        text.contains("Error: domain mqtt.example.com: Route 53"),
        "{text}"
    );
}

#[tokio::test]
async fn fresh_domain_plan_text_and_json() {
    let (cloud, _) = cloud();
    let p = plan_of(&cloud, Some(&spec()), false).await;
    insta::assert_snapshot!(
        "fresh_domain_plan_text",
        crate::plan::render_text(&p, false)
    );
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["domains"][0]["name"], NAME);
    assert_eq!(
        json["domains"][0]["actions"][0]["action"],
        "request_certificate"
    );
    assert_eq!(
        json["domains"][0]["actions"][2]["certificate"]["kind"],
        "new"
    );
    let back: Plan = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
}
