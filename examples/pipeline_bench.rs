//! CPU benchmark of the offline pipeline for a large fleet: parse + validate, render + lint, and
//! the diff against a converged account, for 10,000 stations (or the count given). Prints figures.
//!
//! Run: `cargo run --example pipeline_bench [-- N]` (a debug build: release is faster still).

use std::path::Path;
use std::time::Instant;

use provision::certstore::LocalFiles;
use provision::cloud::{CertStatus, Certificate, Thing};
use provision::config;
use provision::desired::{self, AwsContext};
use provision::observed::{Observed, ObservedCert, ObservedIdentity, ObservedPolicy, ThingState};
use provision::plan;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(root.join("stations.yaml"))
        .unwrap()
        .split("stations:")
        .next()
        .unwrap()
        .to_string();
    text.push_str("stations:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - id: st{i:05}\n    attributes: {{ site: plant-{} }}\n",
            i % 50
        ));
    }

    let t = Instant::now();
    let fleet = config::parse(&root.join("stations.yaml"), &text).expect("valid");
    let parse = t.elapsed();

    let t = Instant::now();
    let d = desired::render(&fleet, &AwsContext::new("cn-northwest-1", "123456789012"))
        .expect("renders");
    let render = t.elapsed();
    // The lint alone, again (it is part of render above).
    let t = Instant::now();
    let findings = provision::lint::check(&d.identities);
    let lint = t.elapsed();
    assert!(findings.is_empty());

    // A converged account, as observe would report it.
    let mut observed = Observed::default();
    for (i, di) in d.identities.iter().enumerate() {
        let id = format!("{i:064x}");
        let cert = ObservedCert {
            cert: Certificate {
                id: id.clone(),
                arn: format!("arn:aws-cn:iot:cn-northwest-1:123456789012:cert/{id}"),
                status: CertStatus::Active,
            },
            attached_policies: vec![di.policy_name.clone()],
        };
        observed.identities.insert(
            di.id.clone(),
            ObservedIdentity {
                thing: ThingState::Owned(Thing {
                    name: di.id.clone(),
                    attributes: di.attributes.clone(),
                }),
                thing_certificates: vec![cert.clone()],
                local_certificate: Some(cert),
                local: LocalFiles {
                    present: true,
                    certificate_id: Some(id),
                    has_private_key: true,
                    archived: Vec::new(),
                },
                policy: Some(ObservedPolicy {
                    document: di.policy.clone(),
                    default_version_id: "1".into(),
                    versions: None,
                }),
            },
        );
    }
    let t = Instant::now();
    let p = plan::diff(&d, &observed, plan::DiffOptions::default());
    let diff = t.elapsed();
    assert!(!p.has_changes() && p.problems.is_empty());

    let total = parse + render + diff;
    println!("offline pipeline for {n} stations (+ the platform), one thread, this build:");
    println!(
        "  parse + validate stations.yaml   {:>8.1} ms",
        parse.as_secs_f64() * 1e3
    );
    println!(
        "  render policies + lint            {:>8.1} ms",
        render.as_secs_f64() * 1e3
    );
    println!(
        "    of which the lint alone         {:>8.1} ms",
        lint.as_secs_f64() * 1e3
    );
    println!(
        "  diff against a converged account {:>8.1} ms",
        diff.as_secs_f64() * 1e3
    );
    println!(
        "  total                             {:>8.1} ms",
        total.as_secs_f64() * 1e3
    );
}
