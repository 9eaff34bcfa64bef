//! Integration tests of `verify` against a private sandbox with its MQTT broker (mosquitto
//! authorizing with the IoT policies attached in the sandbox account): every probe passes for a
//! freshly applied fleet; a wrong, missing or foreign key fails connect with a clear message; a
//! widened policy fails the confinement probes; a broker that is down or silent is a clear
//! error, not a hang; the JSON report is stable.

mod common;

use std::time::{Duration, Instant};

use common::{provision, Fleet, Run, Sandbox};

fn applied() -> (Sandbox, Fleet) {
    let s = Sandbox::start_with_broker();
    let f = Fleet::example();
    let run = provision(Some(&s), f.dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(run.code, 0, "{run:?}");
    (s, f)
}

fn verify(s: &Sandbox, f: &Fleet, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec!["verify".into()];
    args.extend(s.broker_args());
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    provision(Some(s), f.dir.path(), &args)
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))
}

/// The probe of this station in a JSON report.
fn probe<'a>(report: &'a serde_json::Value, station: &str, probe: &str) -> &'a serde_json::Value {
    report["stations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == station)
        .unwrap_or_else(|| panic!("no station {station}"))["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["probe"] == probe)
        .unwrap_or_else(|| panic!("no probe {probe}"))
}

#[test]
fn apply_verify_then_every_probe_passes_with_stable_json() {
    let s = Sandbox::start_with_broker();
    let f = Fleet::example();
    // apply --verify: apply, then verify what changed (everything, on a fresh fleet).
    let mut args = vec![
        "apply".to_string(),
        "--auto-approve".into(),
        "--verify".into(),
    ];
    args.extend(s.broker_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = provision(Some(&s), f.dir.path(), &args);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Apply complete!"), "{run:?}");
    assert!(
        run.stdout.contains("2 of 2 station(s) passed every probe."),
        "{run:?}"
    );

    // The broker really enforced the account's policies: refusals came from the authorizer.
    let decisions = s.broker()["decisions"].as_array().unwrap().clone();
    assert!(decisions.iter().any(|d| d["action"] == "connect"
        && d["client_id"] == "st001"
        && d["allowed"] == false
        && d["reason"]
            .as_str()
            .unwrap()
            .contains("no attached policy allows iot:Connect")));

    let run = verify(&s, &f, &["--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    insta::with_settings!({filters => vec![(r#""port": \d+"#, r#""port": "[port]""#)]}, {
        insta::assert_snapshot!("verify_fresh_fleet_json", run.stdout);
    });

    // One station only; the text report is a table.
    let run = verify(&s, &f, &["--station", "st001"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("station st001: ok"), "{run:?}");
    assert!(!run.stdout.contains("station st000"), "{run:?}");
    assert!(
        run.stdout
            .contains("confined: client id  ok      135  connecting as st000 with st001's certificate refused: CONNACK 135 (Not authorized)"),
        "{run:?}"
    );
}

#[test]
fn wrong_foreign_or_missing_key_fails_connect_with_a_clear_message() {
    let (s, f) = applied();
    let st000 = f.certs().join("st000");
    let st001 = f.certs().join("st001");
    let key = st000.join("private.pem.key");
    let original = std::fs::read(&key).unwrap();

    // Another station's key beside st000's certificate: refused before any connection.
    std::fs::copy(st001.join("private.pem.key"), &key).unwrap();
    let run = verify(&s, &f, &["--station", "st000", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let report = json(&run);
    let connect = probe(&report, "st000", "connect");
    assert_eq!(connect["status"], "fail");
    assert!(
        connect["detail"]
            .as_str()
            .unwrap()
            .contains("private.pem.key does not belong to"),
        "{connect}"
    );
    assert_eq!(probe(&report, "st000", "uplink")["status"], "skipped");

    // Another station's certificate and key in st000's place: the broker refuses client id
    // st000 (CONNACK 135), as AWS does for a certificate whose policy does not allow it.
    std::fs::copy(
        st001.join("certificate.pem.crt"),
        st000.join("certificate.pem.crt"),
    )
    .unwrap();
    let run = verify(&s, &f, &["--station", "st000"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("CONNACK 135 (Not authorized)")
            && run.stdout.contains(
                "likely cause: certificate not ACTIVE, or not attached to a policy that allows iot:Connect on client/st000"
            ),
        "{run:?}"
    );

    // The key missing.
    std::fs::remove_file(&key).unwrap();
    let run = verify(&s, &f, &["--station", "st000"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("private.pem.key is missing")
            && run.stdout.contains("--replace-missing-keys"),
        "{run:?}"
    );
    drop(original);
}

#[tokio::test]
async fn widened_policy_fails_its_confinement_probes() {
    let (s, f) = applied();
    // An operator widens st000's policy in the account: publish to every uplink, connect as anyone.
    let iot = s.iot().await;
    let doc = iot
        .get_policy()
        .policy_name("solar-sandbox-st000")
        .send()
        .await
        .unwrap()
        .policy_document()
        .unwrap()
        .to_string();
    let wide = doc
        .replace("topic/device/station/up/st000", "topic/device/station/up/*")
        .replace("client/st000", "client/*");
    assert_ne!(doc, wide);
    iot.create_policy_version()
        .policy_name("solar-sandbox-st000")
        .policy_document(wide)
        .set_as_default(true)
        .send()
        .await
        .unwrap();

    let run = verify(&s, &f, &["--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let report = json(&run);
    let publish = probe(&report, "st000", "publish_to_other_uplink");
    assert_eq!(publish["status"], "fail", "{publish}");
    assert!(
        publish["cause"]
            .as_str()
            .unwrap()
            .contains("allows iot:Publish beyond topic/device/station/up/st000"),
        "{publish}"
    );
    let client = probe(&report, "st000", "connect_as_other_client");
    assert_eq!(client["status"], "fail", "{client}");
    // What the policy still forbids stays refused, and the other station is unaffected.
    assert_eq!(
        probe(&report, "st000", "subscribe_to_other_downlink")["status"],
        "ok"
    );
    assert_eq!(probe(&report, "st000", "uplink")["status"], "ok");
    let st001 = report["stations"][1].clone();
    assert_eq!(st001["id"], "st001");
    assert_eq!(st001["ok"], true, "{st001}");
    assert_eq!(report["summary"]["failed"], 1);
}

#[test]
fn broker_down_or_silent_is_a_clear_error_not_a_hang() {
    let (s, f) = applied();

    // The server's certificate is checked: without --ca-file it must chain to Amazon Root CA 1.
    let b = s.broker();
    let port = b["port"].to_string();
    let resolve = b["resolve"].as_str().unwrap().to_string();
    let run = provision(
        Some(&s),
        f.dir.path(),
        &["verify", "--port", &port, "--resolve", &resolve],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("the server's certificate was not accepted"),
        "{run:?}"
    );

    // A listener that never answers the TLS handshake: bounded by --timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port().to_string();
    let host = b["host"].as_str().unwrap();
    let started = Instant::now();
    let run = provision(
        Some(&s),
        f.dir.path(),
        &[
            "verify",
            "--port",
            &silent_port,
            "--resolve",
            &format!("{host}:{silent_port}:127.0.0.1"),
            "--ca-file",
            b["ca_file"].as_str().unwrap(),
            "--timeout",
            "1",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{run:?}");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no TLS handshake within 1s"), "{run:?}");
    drop(silent);

    // The broker down.
    s.stop_broker();
    let started = Instant::now();
    let run = verify(&s, &f, &[]);
    assert!(started.elapsed() < Duration::from_secs(10), "{run:?}");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr.contains("error: cannot reach the MQTT endpoint")
            && run.stderr.contains("nothing was verified")
            && run.stderr.contains("Connection refused"),
        "{run:?}"
    );
}

#[test]
fn unknown_station_is_an_error_before_any_call() {
    let s = Sandbox::start_with_broker();
    let f = Fleet::example();
    let run = verify(&s, &f, &["--station", "st000,st999"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("station st999 is not in stations.yaml (its stations: st000, st001)"),
        "{run:?}"
    );
    assert_eq!(s.request_count(), 0);
}

#[tokio::test]
async fn rotate_verify_retires_the_old_certificate_only_after_the_new_one_passes() {
    let (s, f) = applied();
    let cert_id = |id: &str| {
        let pem = std::fs::read_to_string(f.certs().join(id).join("certificate.pem.crt")).unwrap();
        provision::certstore::fingerprint_pem(&pem).unwrap()
    };
    let old = cert_id("st000");
    let mut args: Vec<String> = ["rotate", "--station", "st000", "--verify", "--auto-approve"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend(s.broker_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = provision(Some(&s), f.dir.path(), &args);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(
            "Rotation: 1 of 1 station(s) rotated and verified; old certificates retired: st000."
        ),
        "{run:?}"
    );
    let new = cert_id("st000");
    assert_ne!(new, old);
    let iot = s.iot().await;
    assert!(
        iot.describe_certificate()
            .certificate_id(&old)
            .send()
            .await
            .is_err(),
        "old certificate deleted after verify passed"
    );

    // Verify cannot pass (nothing listens where it connects): the new certificate is issued and
    // ACTIVE, but the old one is kept ACTIVE too; the next apply retires it.
    let before = cert_id("st001");
    let mut args: Vec<String> = [
        "rotate",
        "--station",
        "st001",
        "--verify",
        "--auto-approve",
        "--timeout",
        "3",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let mut broker = s.broker_args();
    let resolve = broker.iter().position(|a| a == "--resolve").unwrap() + 1;
    let host = broker[resolve].split(':').next().unwrap().to_string();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = broker.iter().position(|a| a == "--port").unwrap() + 1;
    broker[port] = closed.to_string();
    broker[resolve] = format!("{host}:{closed}:127.0.0.1");
    args.extend(broker);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = provision(Some(&s), f.dir.path(), &args);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("station st001: its new certificate did not pass verify, so its old certificate stays ACTIVE"), "{run:?}");
    let after = cert_id("st001");
    assert_ne!(after, before, "the new certificate is on disk");
    let status = |id: String| {
        let iot = iot.clone();
        async move {
            iot.describe_certificate()
                .certificate_id(id)
                .send()
                .await
                .unwrap()
                .certificate_description()
                .unwrap()
                .status()
                .unwrap()
                .as_str()
                .to_string()
        }
    };
    assert_eq!(
        status(before.clone()).await,
        "ACTIVE",
        "the old certificate is kept"
    );
    assert_eq!(status(after.clone()).await, "ACTIVE");
    let apply = provision(Some(&s), f.dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(
        status(before).await,
        "INACTIVE",
        "apply retires the old one"
    );
}
