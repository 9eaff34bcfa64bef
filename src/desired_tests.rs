//! Unit tests of template rendering: variables, strictness, JSON validity, size and wildcards.

use std::path::Path;

use super::*;
use crate::config;

const FLEET: &str = r#"fleet: solar-sandbox
certificates:
  dir: certs
policies:
  station: station.json.j2
  platform: platform.json.j2
topics:
  up: "device/station/up/{{ station.id }}"
  down: "device/station/down/{{ station.id }}"
platform:
  id: stmain
stations:
  - id: st000
    attributes: { site: plant-a }
  - id: st001
"#;

const STATION: &str = include_str!("../templates/station-policy.json.j2");
const PLATFORM: &str = include_str!("../templates/platform-policy.json.j2");

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(station: &str, platform: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("station.json.j2"), station).unwrap();
        std::fs::write(dir.path().join("platform.json.j2"), platform).unwrap();
        Self { dir }
    }

    fn render(&self, fleet_text: &str, region: &str) -> Result<Desired, Diagnostics> {
        let path = self.dir.path().join("stations.yaml");
        let fleet = config::parse(&path, fleet_text).unwrap();
        render(&fleet, &AwsContext::new(region, "123456789012"))
    }

    /// Diagnostics with the temp dir removed, for snapshots.
    fn errors(&self, fleet_text: &str) -> String {
        let e = self
            .render(fleet_text, "eu-west-1")
            .unwrap_err()
            .to_string();
        e.replace(&format!("{}/", self.dir.path().display()), "")
    }
}

#[test]
fn example_templates_render_least_privilege_for_china() {
    let s = Setup::new(STATION, PLATFORM);
    let d = s.render(FLEET, "cn-northwest-1").unwrap();
    assert_eq!(d.identities.len(), 3);
    let st000 = &d.identities[1];
    assert_eq!(st000.id, "st000");
    assert_eq!(st000.role, Role::Station);
    assert_eq!(st000.policy_name, "solar-sandbox-st000");
    assert_eq!(st000.attributes["provision_fleet"], "solar-sandbox");
    assert_eq!(st000.attributes["site"], "plant-a");
    assert_eq!(st000.topics["up"], "device/station/up/st000");
    let arn = "arn:aws-cn:iot:cn-northwest-1:123456789012";
    assert_eq!(
        st000.policy,
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iot:Connect", "Resource": format!("{arn}:client/st000")},
                {"Effect": "Allow", "Action": "iot:Publish", "Resource": format!("{arn}:topic/device/station/up/st000")},
                {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": format!("{arn}:topicfilter/device/station/down/st000")},
                {"Effect": "Allow", "Action": "iot:Receive", "Resource": format!("{arn}:topic/device/station/down/st000")}
            ]
        })
    );
    assert_eq!(d.identities[0].role, Role::Platform);
    assert_eq!(d.identities[0].policy_name, "solar-sandbox-stmain");
}

#[test]
fn platform_template_sees_all_stations() {
    let platform = r#"{"Statement": [{% for s in stations %}{"Effect":"Allow","Action":"iot:Receive","Resource":"{{ s.topics.up }}"}{% if not loop.last %},{% endif %}{% endfor %}]}"#;
    let s = Setup::new(STATION, platform);
    let d = s.render(FLEET, "eu-west-1").unwrap();
    let stmts = d.identities[0].policy["Statement"].as_array().unwrap();
    assert_eq!(stmts.len(), 2);
    assert_eq!(stmts[1]["Resource"], "device/station/up/st001");
}

#[test]
fn undefined_variable_is_an_error_reported_once() {
    let s = Setup::new(r#"{"x": "{{ station.nope }}"}"#, PLATFORM);
    insta::assert_snapshot!(s.errors(FLEET));
}

#[test]
fn template_syntax_error_names_file_and_line() {
    let s = Setup::new("{\n  \"x\": \"{{ station.id \"\n}", PLATFORM);
    insta::assert_snapshot!(s.errors(FLEET));
}

#[test]
fn rendered_json_must_parse() {
    let s = Setup::new(r#"{"x": "{{ station.id }}",}"#, PLATFORM);
    insta::assert_snapshot!(s.errors(FLEET));
}

#[test]
fn oversize_policy_is_rejected() {
    let big = format!(r#"{{"Version":"2012-10-17","x":"{}"}}"#, "a".repeat(2100));
    let s = Setup::new(&big, PLATFORM);
    let e = s.errors(FLEET);
    assert!(
        e.contains("characters long excluding white space; AWS IoT allows 2048"),
        "{e}"
    );
}

#[test]
fn wildcards_in_station_policy_are_errors_unless_opted_out() {
    let wide = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#;
    let s = Setup::new(wide, PLATFORM);
    insta::assert_snapshot!(s.errors(FLEET));
    let opted = FLEET
        .replace(
            "  - id: st001\n",
            "  - id: st001\n    least_privilege: warn\n",
        )
        .replace(
            "    attributes: { site: plant-a }\n",
            "    attributes: { site: plant-a }\n    least_privilege: warn\n",
        );
    assert!(s.render(&opted, "eu-west-1").is_ok());
}

#[test]
fn topics_cannot_break_out_or_use_wildcards() {
    let s = Setup::new(STATION, PLATFORM);
    let bad = FLEET.replace(
        "device/station/up/{{ station.id }}",
        "device/+/up/{{ station.id }}\\\"",
    );
    insta::assert_snapshot!(s.errors(&bad));
}

#[test]
fn missing_template_file_points_at_the_fleet_file() {
    let s = Setup::new(STATION, PLATFORM);
    std::fs::remove_file(s.dir.path().join("platform.json.j2")).unwrap();
    let e = s.errors(FLEET);
    assert!(
        e.contains("stations.yaml:6:13: policies.platform: cannot read template"),
        "{e}"
    );
}

#[test]
fn ten_thousand_stations_render() {
    let mut text = FLEET.split("stations:").next().unwrap().to_string();
    text.push_str("stations:\n");
    for i in 0..10_000 {
        text.push_str(&format!("  - id: st{i:05}\n"));
    }
    let s = Setup::new(STATION, PLATFORM);
    let d = s.render(&text, "eu-west-1").unwrap();
    assert_eq!(d.identities.len(), 10_001);
    assert!(Path::new(&d.identities[10_000].cert_dir).ends_with("certs/st09999"));
}

#[test]
fn connect_as_other_stations_is_caught_and_can_be_accepted_as_a_warning() {
    // The research notes' station policy: Connect on client/stmain, client/st000 and client/st001.
    let notes = r#"{"Version":"2012-10-17","Statement":[
      {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:{{ aws.partition }}:iot:{{ aws.region }}:*:topic/{{ topics.up }}"},
      {"Effect":"Allow","Action":"iot:Connect","Resource":[
        "arn:{{ aws.partition }}:iot:{{ aws.region }}:*:client/stmain",
        "arn:{{ aws.partition }}:iot:{{ aws.region }}:*:client/st000",
        "arn:{{ aws.partition }}:iot:{{ aws.region }}:*:client/st001"]}]}"#;
    let s = Setup::new(notes, PLATFORM);
    let e = s.errors(FLEET);
    assert!(e.contains("stations.yaml:13:9: station st000: its policy (station.json.j2) statement 2 lets it connect as client id stmain of stmain"), "{e}");
    assert!(e.contains("least privilege forbids this"), "{e}");
    let accepted = FLEET
        .replace(
            "    attributes: { site: plant-a }\n",
            "    attributes: { site: plant-a }\n    least_privilege: warn\n",
        )
        .replace(
            "  - id: st001\n",
            "  - id: st001\n    least_privilege: warn\n",
        );
    let d = s.render(&accepted, "cn-northwest-1").unwrap();
    assert_eq!(d.warnings.len(), 4, "{:?}", d.warnings);
}
