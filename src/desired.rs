//! Desired state: each identity's thing attributes and its policy, rendered from the minijinja templates.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use minijinja::{context, Environment, UndefinedBehavior, Value};
use serde::Serialize;

use crate::config::{self, Diagnostic, Diagnostics, Fleet, Identity, LintLevel};
use crate::keygen::KeyMethod;
use crate::lint;

/// Largest policy document AWS IoT accepts, in characters excluding white space.
pub const MAX_POLICY_CHARS: usize = 2048;
/// AWS IoT topic names are at most 256 bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// AWS IoT topic names have at most 7 forward slashes (8 levels).
pub const MAX_TOPIC_SLASHES: usize = 7;

/// Where the fleet lives, as policy templates see it (`aws.partition`, `aws.region`, `aws.account_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AwsContext {
    pub partition: String,
    pub region: String,
    pub account_id: String,
}

impl AwsContext {
    pub fn new(region: &str, account_id: &str) -> Self {
        Self {
            partition: config::names::partition_of(region).to_string(),
            region: region.to_string(),
            account_id: account_id.to_string(),
        }
    }
}

/// Whether an identity is a station or the platform.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Platform,
    Station,
}

/// Everything the account should hold for this fleet.
#[derive(Debug, Clone)]
pub struct Desired {
    pub fleet: String,
    pub aws: AwsContext,
    /// The platform first, then the stations in file order.
    pub identities: Vec<DesiredIdentity>,
    /// Least-privilege findings the operator accepted (`least_privilege: warn`).
    pub warnings: Vec<Diagnostic>,
    /// How new key pairs are made.
    pub key_method: KeyMethod,
    /// Where identities' key directories live.
    pub certificates_dir: PathBuf,
    /// The custom MQTT domain, when the file configures one.
    pub domain: Option<crate::config::DomainSpec>,
}

/// One identity's thing, policy and certificate files.
#[derive(Debug, Clone)]
pub struct DesiredIdentity {
    pub id: String,
    pub role: Role,
    /// Thing attributes, including the fleet's ownership mark.
    pub attributes: BTreeMap<String, String>,
    pub policy_name: String,
    /// The rendered policy document.
    pub policy: serde_json::Value,
    /// Rendered topics by name (`up`, `down`, ...).
    pub topics: BTreeMap<String, String>,
    pub cert_dir: PathBuf,
}

/// Render every identity's policy and topics. All problems are reported together.
pub fn render(fleet: &Fleet, aws: &AwsContext) -> Result<Desired, Diagnostics> {
    let mut diags = Diagnostics(Vec::new());
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Templates interpolate inside JSON strings as people write them: no escaping that would add quotes.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);

    // Topic templates, compiled once.
    for (name, template) in &fleet.topics {
        if let Err(e) = env.add_template_owned(format!("topics.{name}"), template.value.clone()) {
            diags.0.push(
                Diagnostic::new(
                    &fleet.path,
                    format!(
                        "topics.{name} is not a valid template: {}",
                        template_message(&e)
                    ),
                )
                .at(template.location),
            );
        }
    }
    for (key, template) in [
        ("policies.station", &fleet.station_template),
        ("policies.platform", &fleet.platform_template),
    ] {
        match std::fs::read_to_string(&template.value) {
            Ok(text) => {
                if let Err(e) = env.add_template_owned(key.to_string(), text) {
                    diags
                        .0
                        .push(Diagnostic::new(&template.value, template_message(&e)).at(
                            e.line().map(|l| config::Location {
                                line: l as u64,
                                column: 0,
                            }),
                        ));
                    // The column is unknown: minijinja reports lines only.
                    if let Some(last) = diags.0.last_mut() {
                        last.column = None;
                    }
                }
            }
            Err(e) => diags.0.push(
                Diagnostic::new(
                    &fleet.path,
                    format!(
                        "{key}: cannot read template {}: {e}",
                        template.value.display()
                    ),
                )
                .at(template.location),
            ),
        }
    }
    if !diags.0.is_empty() {
        return Err(diags);
    }

    let mut seen_errors: HashMap<String, usize> = HashMap::new();
    let mut report = |diags: &mut Diagnostics, d: Diagnostic, key: String| {
        // The same template mistake fails every station the same way: say it once, with a count.
        let n = seen_errors.entry(key).or_insert(0);
        *n += 1;
        if *n == 1 {
            diags.0.push(d);
        }
    };

    // Topics for every identity first: the platform template sees all stations' topics.
    let mut topics_by_id: Vec<BTreeMap<String, String>> = Vec::new();
    for identity in fleet.identities() {
        let mut topics = BTreeMap::new();
        for (name, template) in &fleet.topics {
            let tmpl = env
                .get_template(&format!("topics.{name}"))
                .expect("added above");
            let ctx = context! {
                station => identity_value(identity, None),
                fleet => &fleet.name,
                platform => context! { id => &fleet.platform.id },
            };
            match tmpl.render(ctx) {
                Ok(topic) => {
                    if let Err(why) = check_topic(&topic) {
                        report(
                            &mut diags,
                            Diagnostic::new(
                                &fleet.path,
                                format!("topics.{name} renders to {topic:?}, which {why}"),
                            )
                            .at(template.location)
                            .station(&identity.id),
                            format!("topic {name} {why}"),
                        );
                    }
                    topics.insert(name.clone(), topic);
                }
                Err(e) => report(
                    &mut diags,
                    Diagnostic::new(
                        &fleet.path,
                        format!("topics.{name} cannot be rendered: {}", template_message(&e)),
                    )
                    .at(template.location)
                    .station(&identity.id),
                    format!("topic {name} {e}"),
                ),
            }
        }
        topics_by_id.push(topics);
    }
    if !diags.0.is_empty() {
        return Err(diags);
    }

    let all_stations: Vec<Value> = fleet
        .stations
        .iter()
        .zip(topics_by_id.iter().skip(1))
        .map(|(s, t)| identity_value(s, Some(t)))
        .collect();
    let aws_value = Value::from(minijinja::value::Serde(aws));
    let mut identities = Vec::with_capacity(fleet.stations.len() + 1);
    for (index, (identity, topics)) in fleet.identities().zip(topics_by_id).enumerate() {
        let (role, key, path) = if index == 0 {
            (
                Role::Platform,
                "policies.platform",
                &fleet.platform_template.value,
            )
        } else {
            (
                Role::Station,
                "policies.station",
                &fleet.station_template.value,
            )
        };
        let tmpl = env.get_template(key).expect("added above");
        let mut ctx = BTreeMap::new();
        ctx.insert("station", identity_value(identity, Some(&topics)));
        ctx.insert("fleet", Value::from(fleet.name.as_str()));
        ctx.insert("topics", Value::from(minijinja::value::Serde(&topics)));
        ctx.insert("platform", context! { id => &fleet.platform.id });
        ctx.insert("aws", aws_value.clone());
        if role == Role::Platform {
            ctx.insert("stations", Value::from(all_stations.clone()));
        }
        let text = match tmpl.render(&ctx) {
            Ok(t) => t,
            Err(e) => {
                report(
                    &mut diags,
                    Diagnostic::new(path, template_message(&e))
                        .at(e.line().map(|l| config::Location {
                            line: l as u64,
                            column: 0,
                        }))
                        .station(&identity.id),
                    format!("{key} {e}"),
                );
                if let Some(last) = diags.0.last_mut() {
                    last.column = None;
                }
                continue;
            }
        };
        match check_policy_text(&text) {
            Ok(policy) => {
                let mut attributes = identity.attributes.clone();
                attributes.insert(config::OWNER_ATTRIBUTE.to_string(), fleet.name.clone());
                identities.push(DesiredIdentity {
                    id: identity.id.clone(),
                    role,
                    attributes,
                    policy_name: fleet.policy_name(&identity.id),
                    policy,
                    topics,
                    cert_dir: fleet.cert_dir(&identity.id),
                });
            }
            Err(why) => report(
                &mut diags,
                Diagnostic::new(path, format!("the rendered policy {why}")).station(&identity.id),
                format!("{key} {}", why.replace(&identity.id, "<id>")),
            ),
        }
    }
    // Least privilege, judged on what every policy renders to.
    let mut warnings = Vec::new();
    if diags.0.is_empty() {
        let by_id: HashMap<&str, &Identity> =
            fleet.identities().map(|i| (i.id.as_str(), i)).collect();
        for finding in lint::check(&identities) {
            let identity = by_id[finding.station.as_str()];
            let template = fleet.station_template.value.display();
            let d = Diagnostic::new(
                &fleet.path,
                format!("its policy ({template}) {}", finding.message),
            )
            .at(identity.location)
            .station(&finding.station);
            match identity.least_privilege {
                LintLevel::Error => {
                    let key = format!("lint {}", finding.message.replace(&finding.station, "<id>"));
                    report(
                        &mut diags,
                        Diagnostic {
                            message: format!("{}; least privilege forbids this (set `least_privilege: warn` on the station to accept it)", d.message),
                            ..d
                        },
                        key,
                    );
                }
                LintLevel::Warn => warnings.push(d),
            }
        }
    }
    let repeated: usize = seen_errors.values().map(|n| n - 1).sum();
    if repeated > 0 {
        diags.0.push(Diagnostic::new(
            &fleet.path,
            format!("{repeated} more error(s) like the ones above, in other stations (each reported once)"),
        ));
    }
    if !diags.0.is_empty() {
        return Err(diags);
    }
    Ok(Desired {
        fleet: fleet.name.clone(),
        aws: aws.clone(),
        identities,
        warnings,
        key_method: fleet.key_method,
        certificates_dir: fleet.certificates_dir.clone(),
        domain: fleet.domain.clone(),
    })
}

fn identity_value(identity: &Identity, topics: Option<&BTreeMap<String, String>>) -> Value {
    match topics {
        Some(t) => context! { id => &identity.id, attributes => &identity.attributes, topics => t },
        None => context! { id => &identity.id, attributes => &identity.attributes },
    }
}

/// A rendered topic must be a concrete topic name that cannot break out of a JSON string.
fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("is empty".into());
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(format!(
            "is {} bytes long; AWS IoT allows {MAX_TOPIC_BYTES}",
            topic.len()
        ));
    }
    if let Some(c) = topic.chars().find(|c| {
        matches!(c, '+' | '#' | '*' | '?' | '"' | '\\') || c.is_control() || c.is_whitespace()
    }) {
        return Err(format!(
            "contains {c:?}: a topic name must not contain MQTT or policy wildcards, quotes, backslashes or white space"
        ));
    }
    let slashes = topic.matches('/').count();
    if slashes > MAX_TOPIC_SLASHES {
        return Err(format!(
            "has {slashes} slashes; AWS IoT allows at most {MAX_TOPIC_SLASHES}"
        ));
    }
    Ok(())
}

/// Parse rendered policy text and apply AWS's size limit.
fn check_policy_text(text: &str) -> Result<serde_json::Value, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let line = text
            .lines()
            .nth(e.line().saturating_sub(1))
            .unwrap_or("")
            .trim();
        format!("is not valid JSON: {e} of the rendered text, which reads {line:?} there")
    })?;
    if !value.is_object() {
        return Err("is not a JSON object".into());
    }
    let chars = text.chars().filter(|c| !c.is_whitespace()).count();
    if chars > MAX_POLICY_CHARS {
        return Err(format!(
            "is {chars} characters long excluding white space; AWS IoT allows {MAX_POLICY_CHARS}"
        ));
    }
    Ok(value)
}

fn template_message(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Placeholder account id for offline rendering (`validate`), where the account is not asked.
pub const OFFLINE_ACCOUNT_ID: &str = "123456789012";

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
