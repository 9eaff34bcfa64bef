//! Least-privilege lint: evaluates each station's rendered policy with AWS IoT policy semantics
//! and reports what lets it act as another identity or touch another identity's topics.
//!
//! Semantics: `*` matches any characters (across `/` levels), `?` one character; MQTT's `+` and
//! `#` are plain characters in policy resources, but a `topicfilter` resource that contains them
//! lets the station subscribe with that MQTT filter. Policy variables for the connecting thing
//! (`${iot:ClientId}`, `${iot:Connection.Thing.ThingName}`, `${iot:Connection.Thing.Attributes[x]}`)
//! are substituted with the station's own values. Exact resources are looked up in an index, so
//! the check is linear in the fleet size; only wildcard resources are matched against everyone.

use std::collections::HashMap;

use serde_json::Value;

use crate::desired::{DesiredIdentity, Role};

/// MQTT actions a station policy can grant.
const ACTIONS: [&str; 4] = ["iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"];

/// One thing a station's policy allows that least privilege forbids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub station: String,
    pub message: String,
}

/// Who owns which client id, topic and topic filter.
struct Index<'a> {
    clients: HashMap<&'a str, &'a str>,
    topics: HashMap<&'a str, &'a str>,
    all: &'a [DesiredIdentity],
}

impl<'a> Index<'a> {
    fn new(all: &'a [DesiredIdentity]) -> Self {
        let mut clients = HashMap::new();
        let mut topics = HashMap::new();
        for i in all {
            clients.insert(i.id.as_str(), i.id.as_str());
            for t in i.topics.values() {
                topics.insert(t.as_str(), i.id.as_str());
            }
        }
        Self {
            clients,
            topics,
            all,
        }
    }

    /// Identities other than `me` whose resource of `kind` the pattern matches.
    fn others(&self, kind: Kind, pattern: &str, me: &str) -> Vec<String> {
        let wild = pattern.contains(['*', '?']);
        let mqtt_wild = kind == Kind::Filter && pattern.contains(['+', '#']);
        let exact = !(wild || mqtt_wild);
        let map = match kind {
            Kind::Client => &self.clients,
            Kind::Topic | Kind::Filter => &self.topics,
        };
        if exact {
            return match map.get(pattern) {
                Some(owner) if *owner != me => {
                    vec![format!("{} of {owner}", describe(kind, pattern))]
                }
                _ => Vec::new(),
            };
        }
        let mut hits = Vec::new();
        for i in self.all.iter().filter(|i| i.id != me) {
            let names: Vec<&str> = match kind {
                Kind::Client => vec![i.id.as_str()],
                Kind::Topic | Kind::Filter => i.topics.values().map(String::as_str).collect(),
            };
            for name in names {
                let matched = match kind {
                    Kind::Filter => {
                        // The policy resource is a literal filter the station may subscribe with;
                        // what that MQTT filter receives is what counts.
                        let literal = glob_match(pattern, name);
                        literal
                            || (!pattern.contains(['*', '?']) && mqtt_filter_matches(pattern, name))
                    }
                    _ => glob_match(pattern, name),
                };
                if matched {
                    hits.push(format!("{} of {}", describe(kind, name), i.id));
                }
            }
        }
        hits
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Client,
    Topic,
    Filter,
}

fn describe(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Client => format!("client id {name}"),
        Kind::Topic => format!("topic {name}"),
        Kind::Filter => format!("topic {name}"),
    }
}

/// Lint every station (the platform is trusted to span the fleet).
pub fn check(identities: &[DesiredIdentity]) -> Vec<Finding> {
    let index = Index::new(identities);
    let mut findings = Vec::new();
    for me in identities.iter().filter(|i| i.role == Role::Station) {
        for message in check_one(me, &index) {
            findings.push(Finding {
                station: me.id.clone(),
                message,
            });
        }
    }
    findings
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn substitute(resource: &str, me: &DesiredIdentity) -> String {
    if !resource.contains("${") {
        return resource.to_string();
    }
    let mut r = resource
        .replace("${iot:ClientId}", &me.id)
        .replace("${iot:Connection.Thing.ThingName}", &me.id);
    for (k, v) in &me.attributes {
        r = r.replace(&format!("${{iot:Connection.Thing.Attributes[{k}]}}"), v);
    }
    r
}

fn check_one(me: &DesiredIdentity, index: &Index) -> Vec<String> {
    let mut out = Vec::new();
    let stmts: &[Value] = match me.policy.get("Statement") {
        Some(Value::Array(a)) => a,
        Some(other) => std::slice::from_ref(other),
        None => &[],
    };
    for (n, stmt) in stmts.iter().enumerate() {
        if stmt.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let n = n + 1;
        if stmt.get("NotAction").is_some() || stmt.get("NotResource").is_some() {
            out.push(format!(
                "statement {n} uses NotAction/NotResource, which allows everything not listed"
            ));
            continue;
        }
        let actions: Vec<&str> = strings(stmt.get("Action"))
            .iter()
            .flat_map(|a| {
                ACTIONS
                    .iter()
                    .copied()
                    .filter(move |known| {
                        glob_match(&a.to_ascii_lowercase(), &known.to_ascii_lowercase())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for action in strings(stmt.get("Action")) {
            if action.contains(['*', '?']) {
                out.push(format!("statement {n} allows action {action:?}"));
            }
        }
        for raw in strings(stmt.get("Resource")) {
            let resource = substitute(&raw, me);
            if resource == "*" {
                out.push(format!(
                    "statement {n} allows {} on every resource (\"*\")",
                    actions.join(", ")
                ));
                continue;
            }
            let parts: Vec<&str> = resource.splitn(6, ':').collect();
            let Some(rest) = parts.get(5) else { continue };
            let (kind_name, name) = rest.split_once('/').unwrap_or((rest, ""));
            if kind_name.contains(['*', '?']) {
                out.push(format!(
                    "statement {n} allows resource {raw:?}, a wildcard resource type"
                ));
                continue;
            }
            let kind = match kind_name {
                "client" => Kind::Client,
                "topic" => Kind::Topic,
                "topicfilter" => Kind::Filter,
                _ => continue,
            };
            let relevant = actions.iter().any(|a| match kind {
                Kind::Client => *a == "iot:Connect",
                Kind::Topic => *a == "iot:Publish" || *a == "iot:Receive",
                Kind::Filter => *a == "iot:Subscribe",
            });
            if !relevant {
                continue;
            }
            if name.contains(['*', '?']) {
                out.push(format!(
                    "statement {n} allows resource {raw:?} (a wildcard)"
                ));
            }
            let others = index.others(kind, name, &me.id);
            if !others.is_empty() {
                let verb = match kind {
                    Kind::Client => "connect as",
                    Kind::Topic => "publish to or receive from",
                    Kind::Filter => "subscribe to",
                };
                let shown: Vec<&String> = others.iter().take(3).collect();
                let more = if others.len() > 3 {
                    format!(" and {} more", others.len() - 3)
                } else {
                    String::new()
                };
                out.push(format!(
                    "statement {n} lets it {verb} {}{more} (resource {raw:?})",
                    shown
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    out
}

/// AWS IoT policy matching: `*` any run of characters (including `/`), `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// MQTT topic filter matching (`+` one level, `#` the rest).
pub fn mqtt_filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn ident(id: &str, role: Role, policy: Value) -> DesiredIdentity {
        let mut topics = BTreeMap::new();
        topics.insert("up".into(), format!("device/station/up/{id}"));
        topics.insert("down".into(), format!("device/station/down/{id}"));
        DesiredIdentity {
            id: id.into(),
            role,
            attributes: BTreeMap::new(),
            policy_name: format!("f-{id}"),
            policy,
            topics,
            cert_dir: Default::default(),
        }
    }

    const ARN: &str = "arn:aws-cn:iot:cn-northwest-1:*";

    fn least(id: &str) -> Value {
        json!({"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"iot:Connect","Resource":format!("{ARN}:client/{id}")},
            {"Effect":"Allow","Action":"iot:Publish","Resource":format!("{ARN}:topic/device/station/up/{id}")},
            {"Effect":"Allow","Action":"iot:Subscribe","Resource":format!("{ARN}:topicfilter/device/station/down/{id}")},
            {"Effect":"Allow","Action":"iot:Receive","Resource":format!("{ARN}:topic/device/station/down/{id}")}
        ]})
    }

    fn fleet(st000: Value) -> Vec<DesiredIdentity> {
        vec![
            ident(
                "stmain",
                Role::Platform,
                json!({"Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}),
            ),
            ident("st000", Role::Station, st000),
            ident("st001", Role::Station, least("st001")),
        ]
    }

    #[test]
    fn least_privilege_policies_pass() {
        assert_eq!(check(&fleet(least("st000"))), vec![]);
    }

    #[test]
    fn the_research_notes_policy_is_caught() {
        // Section 4.1 of the notes: each station may connect as stmain, st000 and st001.
        let p = json!({"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["iot:Publish","iot:PublishRetain"],"Resource":format!("{ARN}:topic/device/station/up/st000")},
            {"Effect":"Allow","Action":["iot:Receive"],"Resource":[format!("{ARN}:topic/device/station/down/st000")]},
            {"Effect":"Allow","Action":["iot:Subscribe"],"Resource":[format!("{ARN}:topicfilter/device/station/down/st000")]},
            {"Effect":"Allow","Action":"iot:Connect","Resource":[format!("{ARN}:client/stmain"),format!("{ARN}:client/st000"),format!("{ARN}:client/st001")]}
        ]});
        let f = check(&fleet(p));
        let msgs: Vec<&str> = f.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(msgs, [
            "statement 4 lets it connect as client id stmain of stmain (resource \"arn:aws-cn:iot:cn-northwest-1:*:client/stmain\")",
            "statement 4 lets it connect as client id st001 of st001 (resource \"arn:aws-cn:iot:cn-northwest-1:*:client/st001\")",
        ]);
        assert!(f.iter().all(|f| f.station == "st000"));
    }

    #[test]
    fn wildcards_and_mqtt_filters_reach_others() {
        let p = json!({"Statement":[
            {"Effect":"Allow","Action":"iot:Connect","Resource":format!("{ARN}:client/*")},
            {"Effect":"Allow","Action":"iot:Subscribe","Resource":format!("{ARN}:topicfilter/device/station/down/#")},
            {"Effect":"Allow","Action":"iot:Publish","Resource":format!("{ARN}:topic/device/station/up/st00?")}
        ]});
        let f = check(&fleet(p));
        let text: Vec<&str> = f.iter().map(|f| f.message.as_str()).collect();
        assert!(text.iter().any(|m| m.starts_with("statement 1 lets it connect as client id stmain of stmain, client id st001 of st001")), "{text:#?}");
        assert!(text.iter().any(|m| m.starts_with("statement 2 lets it subscribe to topic device/station/down/stmain of stmain, topic device/station/down/st001 of st001")), "{text:#?}");
        assert!(text.iter().any(|m| m.starts_with("statement 3 lets it publish to or receive from topic device/station/up/st001 of st001")), "{text:#?}");
    }

    #[test]
    fn policy_variables_are_the_station_itself() {
        let p = json!({"Statement":[
            {"Effect":"Allow","Action":"iot:Connect","Resource":format!("{ARN}:client/${{iot:Connection.Thing.ThingName}}")},
            {"Effect":"Allow","Action":"iot:Publish","Resource":format!("{ARN}:topic/device/station/up/${{iot:ClientId}}")}
        ]});
        assert_eq!(check(&fleet(p)), vec![]);
    }

    #[test]
    fn star_everything() {
        let p = json!({"Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]});
        let f = check(&fleet(p));
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].message.contains("\"iot:*\""));
        assert!(f[1].message.contains("every resource"));
    }

    #[test]
    fn glob_semantics() {
        assert!(glob_match("a/*", "a/b/c"));
        assert!(glob_match("a/?", "a/b"));
        assert!(!glob_match("a/?", "a/bc"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a+", "ab"));
        assert!(mqtt_filter_matches("a/+/c", "a/b/c"));
        assert!(mqtt_filter_matches("a/#", "a/b/c"));
        assert!(!mqtt_filter_matches("a/+", "a/b/c"));
    }

    #[test]
    fn ten_thousand_stations_lint_in_linear_time() {
        let mut all = vec![ident("stmain", Role::Platform, json!({}))];
        for i in 0..10_000 {
            let id = format!("st{i:05}");
            all.push(ident(&id, Role::Station, least(&id)));
        }
        assert!(check(&all).is_empty());
    }
}
