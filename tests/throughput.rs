//! Batch behaviour under AWS-like throttling: provision paced too fast for the account's quotas
//! is throttled, retries, slows down and still fails no station; progress lines appear in logs.
//! (Speed itself is measured by scripts/bench, never asserted in a test.)

mod common;

use common::{provision_env, Fleet, Sandbox};

#[test]
fn throttling_is_retried_and_fails_no_station() {
    // The emulated account allows a fifth of AWS's default quotas; provision is told 3x the
    // defaults, so it sends far too fast and AWS-style ThrottlingExceptions come back.
    let s = Sandbox::start_with(&["--quota-scale", "0.2", "--latency-ms", "20"]);
    let f = Fleet::example();
    let mut text = f.read();
    for i in 0..25 {
        text.push_str(&format!("  - id: bulk{i:02}\n"));
    }
    f.write(&text);
    let env = [("PROVISION_PROGRESS_INTERVAL", "0.5")];
    let apply = provision_env(
        Some(&s),
        f.dir.path(),
        &["apply", "--auto-approve", "--rate-scale", "3", "--stats"],
        &env,
    );
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        apply
            .stderr
            .contains("Stations: 28 changed, 0 unchanged, 0 failed"),
        "{apply:?}"
    );
    let throttled: u64 = apply
        .stderr
        .lines()
        .find(|l| l.contains("total") && l.contains("throttled;"))
        .and_then(|l| l.split(" calls, ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stats line: {apply:?}"));
    assert!(
        throttled > 0,
        "the emulated quotas should have throttled some calls: {apply:?}"
    );
    // Plain progress lines for logs (stderr is not a terminal here).
    assert!(apply.stderr.contains("provision: applying "), "{apply:?}");
    let plan = provision_env(
        Some(&s),
        f.dir.path(),
        &["plan", "--detailed-exitcode", "--rate-scale", "3"],
        &env,
    );
    assert_eq!(
        plan.code, 0,
        "every station converged despite throttling: {plan:?}"
    );
}

#[test]
fn a_station_that_needs_attention_does_not_stop_the_others() {
    let s = Sandbox::start();
    let f = Fleet::example();
    // st001's key directory exists but is not one: it needs the operator.
    std::fs::create_dir_all(f.certs()).unwrap();
    std::fs::write(f.certs().join("st001"), "not a directory").unwrap();
    let apply = provision_env(Some(&s), f.dir.path(), &["apply", "--auto-approve"], &[]);
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(apply.stdout.contains("Error: station st001:"), "{apply:?}");
    assert!(
        apply
            .stderr
            .contains("Stations: 2 changed, 0 unchanged, 0 failed, 1 need attention"),
        "{apply:?}"
    );
    assert!(f.certs().join("st000/private.pem.key").exists());
    assert!(f.certs().join("stmain/private.pem.key").exists());
}
