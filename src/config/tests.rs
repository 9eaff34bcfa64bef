//! Unit tests of fleet-file parsing and validation (exact error text, as snapshots).

use std::path::Path;

use super::*;

const GOOD: &str = r#"fleet: solar-sandbox
region: cn-northwest-1
certificates:
  dir: certs
policies:
  station: templates/station-policy.json.j2
  platform: templates/platform-policy.json.j2
topics:
  up: "device/station/up/{{ station.id }}"
  down: "device/station/down/{{ station.id }}"
platform:
  id: stmain
stations:
  - id: st000
    attributes: { site: plant-a, capacity_kw: 250 }
  - id: st001
"#;

fn errors(text: &str) -> String {
    parse(Path::new("stations.yaml"), text)
        .expect_err("should be invalid")
        .to_string()
}

#[test]
fn the_example_parses() {
    let f = parse(Path::new("fleet/stations.yaml"), GOOD).unwrap();
    assert_eq!(f.name, "solar-sandbox");
    assert_eq!(f.region.as_deref(), Some("cn-northwest-1"));
    assert_eq!(f.platform.id, "stmain");
    assert_eq!(
        f.stations.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["st000", "st001"]
    );
    assert_eq!(f.stations[0].attributes["capacity_kw"], "250");
    assert_eq!(f.stations[0].location.unwrap().line, 14);
    assert_eq!(f.certificates_dir, Path::new("fleet/certs"));
    assert_eq!(
        f.station_template.value,
        Path::new("fleet/templates/station-policy.json.j2")
    );
    assert_eq!(f.policy_name("st000"), "solar-sandbox-st000");
    assert_eq!(f.topics[0].0, "up");
}

#[test]
fn empty_file() {
    insta::assert_snapshot!(errors("  \n"));
}

#[test]
fn yaml_syntax_error_has_a_location() {
    let d = parse(Path::new("stations.yaml"), "fleet: [unclosed\n").unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert!(d.0[0].line.is_some(), "{d}");
}

#[test]
fn unknown_key() {
    let text = GOOD.replace("  - id: st001\n", "  - id: st001\n    colour: red\n");
    let d = parse(Path::new("stations.yaml"), &text).unwrap_err();
    insta::assert_snapshot!(d.to_string());
    assert_eq!(d.0[0].line, Some(17));
}

#[test]
fn wrong_type() {
    let text = GOOD.replace("stations:\n", "stations: 3\nx:\n");
    insta::assert_snapshot!(errors(&text));
}

#[test]
fn missing_key() {
    let text = GOOD.replace("certificates:\n  dir: certs\n", "");
    insta::assert_snapshot!(errors(&text));
}

#[test]
fn every_semantic_problem_at_once() {
    let text = r#"fleet: solar-sandbox
region: mars
certificates:
  dir: certs
policies:
  station: templates/station-policy.json.j2
  platform: templates/platform-policy.json.j2
topics:
  up: "device/station/up/{{ station.id }}"
platform:
  id: stmain
stations:
  - id: st000
  - id: "st 001"
  - id: st000
  - id: stmain
  - id: st002
    attributes: { a: "1", b: "2", c: "3" }
  - id: st003
    attributes: { provision_fleet: other, "bad key": x, ok: "quote\"d" }
  - id: "x:y"
"#;
    insta::assert_snapshot!(errors(text));
}

#[test]
fn duplicate_ids_name_both_lines() {
    let text = GOOD.replace("  - id: st001\n", "  - id: st001\n  - id: st000\n");
    let d = parse(Path::new("stations.yaml"), &text).unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert_eq!(d.0[0].station.as_deref(), Some("st000"));
    assert_eq!(d.0[0].line, Some(17));
    assert!(
        d.0[0].message.contains("first defined at line 14"),
        "{}",
        d.0[0]
    );
}

#[test]
fn ten_thousand_stations_parse() {
    let mut text = GOOD.split("stations:").next().unwrap().to_string();
    text.push_str("stations:\n");
    for i in 0..10_000 {
        text.push_str(&format!("  - id: st{i:05}\n"));
    }
    let f = parse(Path::new("stations.yaml"), &text).unwrap();
    assert_eq!(f.stations.len(), 10_000);
}

#[test]
fn an_invalid_fleet_name_is_reported_once() {
    let text = GOOD.replace("fleet: solar-sandbox", "fleet: \"solar sandbox\"");
    let d = parse(Path::new("stations.yaml"), &text).unwrap_err();
    assert_eq!(d.0.len(), 1, "{d}");
    assert_eq!(d.0[0].line, Some(1));
}
