//! Operator experience: init, schema, completions, --target, exit codes and colour rules.

mod common;

use common::{provision, provision_env, Fleet, Sandbox};

#[test]
fn init_writes_a_valid_starter_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let run = provision(None, dir.path(), &["init"]);
    assert_eq!(run.code, 0, "{run:?}");
    for f in [
        "stations.yaml",
        "templates/station-policy.json.j2",
        "templates/platform-policy.json.j2",
    ] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    let valid = provision(None, dir.path(), &["validate"]);
    assert_eq!(valid.code, 0, "{valid:?}");
    let before = std::fs::read_to_string(dir.path().join("stations.yaml")).unwrap();
    std::fs::write(dir.path().join("stations.yaml"), "fleet: edited\n").unwrap();
    let again = provision(None, dir.path(), &["init"]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again
            .stderr
            .contains("stations.yaml already exists; provision init never overwrites files"),
        "{again:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("stations.yaml")).unwrap(),
        "fleet: edited\n"
    );
    assert_ne!(before, "fleet: edited\n");
}

#[test]
fn schema_describes_every_key_of_the_example() {
    let f = Fleet::example();
    let run = provision(None, f.dir.path(), &["schema"]);
    assert_eq!(run.code, 0, "{run:?}");
    let schema: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let props = schema["properties"].as_object().unwrap();
    let example: serde_json::Value = {
        // Top-level keys of the example fleet file.
        let text = f.read();
        let keys: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('#') && l.contains(':'))
            .map(|l| l.split(':').next().unwrap().to_string())
            .collect();
        serde_json::json!(keys)
    };
    for key in example.as_array().unwrap() {
        assert!(
            props.contains_key(key.as_str().unwrap()),
            "schema lacks {key}"
        );
    }
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown keys are errors, as in the parser"
    );
    insta::assert_json_snapshot!(schema["required"]);
}

#[test]
fn completions_for_bash_and_zsh() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh"] {
        let run = provision(None, dir.path(), &["completions", shell]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("provision"), "{shell}");
        assert!(run.stdout.contains("--detailed-exitcode"), "{shell}");
    }
}

#[test]
fn target_limits_plan_and_apply_to_the_named_stations() {
    let s = Sandbox::start();
    let f = Fleet::example();
    let d = f.dir.path();
    let plan = provision(
        Some(&s),
        d,
        &["plan", "--target", "st000", "--detailed-exitcode"],
    );
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("# station st000"), "{plan:?}");
    assert!(
        !plan.stdout.contains("st001") && !plan.stdout.contains("stmain"),
        "{plan:?}"
    );
    let apply = provision(
        Some(&s),
        d,
        &["apply", "--target", "st000", "--auto-approve"],
    );
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(f.certs().join("st000").exists() && !f.certs().join("st001").exists());
    let rest = provision(Some(&s), d, &["plan", "--detailed-exitcode"]);
    assert_eq!(rest.code, 2, "the others are still to do: {rest:?}");
    assert!(!rest.stdout.contains("# station st000"), "{rest:?}");

    let before = s.request_count();
    let unknown = provision(Some(&s), d, &["plan", "--target", "st999"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("--target st999: there is no station or platform st999 in stations.yaml"),
        "{unknown:?}"
    );
    assert_eq!(s.request_count(), before, "no AWS call for a bad --target");
    let both = provision(Some(&s), d, &["plan", "--target", "st000", "--prune"]);
    assert_eq!(both.code, 2, "clap usage error: {both:?}");
}

#[test]
fn exit_codes_are_documented_in_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["plan", "--help"]] {
        let run = provision(None, dir.path(), args);
        assert_eq!(run.code, 0);
        assert!(
            run.stdout
                .contains("2  with --detailed-exitcode: success, and there are changes (drift)"),
            "{run:?}"
        );
    }
}

#[test]
fn no_colour_unless_a_terminal() {
    // Tests run with stdout piped: never ANSI escapes, even when NO_COLOR is not set.
    let s = Sandbox::start();
    let f = Fleet::example();
    let run = provision_env(Some(&s), f.dir.path(), &["plan"], &[("NO_COLOR", "")]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains('\u{1b}'), "{run:?}");
}

#[tokio::test]
async fn saved_plan_applies_exactly_and_refuses_when_stale() {
    let s = Sandbox::start();
    let f = Fleet::example();
    let d = f.dir.path();
    let plan = provision(
        Some(&s),
        d,
        &["plan", "-o", "plan.json", "--detailed-exitcode"],
    );
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stderr.contains("Saved the plan to plan.json"),
        "{plan:?}"
    );
    let saved = std::fs::read_to_string(d.join("plan.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["fingerprint"]["file"].as_str().unwrap().len(), 64);
    assert!(!saved.contains("PRIVATE KEY"));

    // A flag that belongs to plan is refused with a plan file.
    let wrong = provision(Some(&s), d, &["apply", "plan.json", "--target", "st000"]);
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(
        wrong.stderr.contains("come from the saved plan"),
        "{wrong:?}"
    );

    // Applied exactly, without a question (the saved plan is the approval).
    let apply = provision(Some(&s), d, &["apply", "plan.json"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        apply
            .stdout
            .contains("Apply complete! Resources: 15 added, 3 changed, 0 destroyed."),
        "{apply:?}"
    );
    assert!(!saved.contains("PRIVATE KEY"));
    let again = provision(Some(&s), d, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");

    // The same plan again: the account changed since (it was applied).
    let stale = provision(Some(&s), d, &["apply", "plan.json"]);
    assert_eq!(stale.code, 1, "{stale:?}");
    assert!(
        stale
            .stderr
            .contains("the account changed since plan.json was made"),
        "{stale:?}"
    );

    // Out-of-band drift after planning: refused, nothing changed.
    let plan = provision(Some(&s), d, &["plan", "-o", "plan.json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let payload = aws_sdk_iot::types::AttributePayload::builder()
        .attributes("site", "elsewhere")
        .merge(true)
        .build();
    s.iot()
        .await
        .update_thing()
        .thing_name("st000")
        .attribute_payload(payload)
        .send()
        .await
        .unwrap();
    let stale = provision(Some(&s), d, &["apply", "plan.json"]);
    assert_eq!(stale.code, 1, "{stale:?}");
    assert!(
        stale
            .stderr
            .contains("the account changed since plan.json was made"),
        "{stale:?}"
    );
    let drift = provision(Some(&s), d, &["plan", "--detailed-exitcode"]);
    assert_eq!(drift.code, 2, "the drift is still there: {drift:?}");

    // The fleet file edited after planning: refused before any AWS call.
    let plan = provision(Some(&s), d, &["plan", "-o", "plan.json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    f.write(&f.read().replace("site: plant-a", "site: plant-b"));
    let before = s.request_count();
    let stale = provision(Some(&s), d, &["apply", "plan.json"]);
    assert_eq!(stale.code, 1, "{stale:?}");
    assert!(
        stale
            .stderr
            .contains("stations.yaml or its templates changed since plan.json was made"),
        "{stale:?}"
    );
    assert_eq!(s.request_count(), before);
}
