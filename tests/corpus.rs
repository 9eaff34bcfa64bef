//! Bad input corpus: every broken fleet file or template in tests/corpus/ gives a clear error
//! with its location, exits 1, prints nothing on stdout, and makes no AWS call.

mod common;

use std::path::Path;

use common::{provision, Fleet, Sandbox};

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn every_broken_input_is_refused_before_any_aws_call() {
    let s = Sandbox::start();
    let corpus = common::repo().join("tests/corpus");
    let mut cases: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "{} cases", cases.len());
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let f = Fleet::example();
        copy_dir(case, f.dir.path());
        let expect = std::fs::read_to_string(case.join("expect")).unwrap();
        for cmd in [&["validate"][..], &["plan"], &["apply", "--auto-approve"]] {
            let run = provision(Some(&s), f.dir.path(), cmd);
            assert_eq!(run.code, 1, "{name} {cmd:?}: {run:?}");
            assert!(
                run.stderr.contains(expect.trim()),
                "{name} {cmd:?}: expected {:?}\n{run:?}",
                expect.trim()
            );
            assert!(run.stdout.is_empty(), "{name} {cmd:?}: {run:?}");
            assert!(!f.certs().exists(), "{name} {cmd:?}: wrote key files");
        }
        eprintln!("ok: {name}: {}", expect.trim());
    }
    assert_eq!(s.request_count(), 0, "bad input must not reach AWS");
}

#[test]
fn a_very_large_file_is_refused_clearly() {
    let f = Fleet::example();
    let mut text = f.read();
    let target = 33 * 1024 * 1024;
    let mut i = 0;
    while text.len() < target {
        text.push_str(&format!(
            "  - id: st{i:07}\n    attributes: {{ site: plant-{i} }}\n"
        ));
        i += 1;
    }
    f.write(&text);
    let run = provision(None, f.dir.path(), &["validate"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("stations.yaml: the file is 33.0 MiB; fleet files are limited to 32 MiB"),
        "{run:?}"
    );
}

#[test]
fn a_large_valid_file_validates() {
    let f = Fleet::example();
    let mut text = f.read();
    for i in 0..20_000 {
        text.push_str(&format!("  - id: bulk{i:05}\n"));
    }
    f.write(&text);
    let run = provision(None, f.dir.path(), &["validate"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("20002 stations"), "{run:?}");
}

#[test]
fn region_flag_conflicting_with_the_file_is_an_error() {
    let f = Fleet::example();
    let run = provision(None, f.dir.path(), &["validate", "--region", "eu-west-1"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("--region eu-west-1 disagrees with `region: cn-northwest-1`"),
        "{run:?}"
    );
}

#[test]
fn secrets_never_reach_stdout_stderr_logs_or_the_json_plan() {
    let s = Sandbox::start();
    let f = Fleet::example();
    let d = f.dir.path();
    let mut all = String::new();
    for (args, log) in [
        (&["apply", "--auto-approve", "-vv"][..], "trace"),
        (&["plan", "--json"][..], "trace"),
        (&["apply", "--auto-approve", "--json"][..], "debug"),
    ] {
        let run = common::provision_env(Some(&s), d, args, &[("RUST_LOG", log)]);
        assert_eq!(run.code, 0, "{run:?}");
        all.push_str(&run.stdout);
        all.push_str(&run.stderr);
    }
    let key = std::fs::read_to_string(f.certs().join("st000/private.pem.key")).unwrap();
    let body: String = key.lines().nth(1).unwrap().to_string();
    assert!(!all.contains("PRIVATE KEY"), "a private key was printed");
    assert!(!all.contains(&body), "a private key was printed");
}
