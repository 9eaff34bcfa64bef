//! IoT policy documents: semantic comparison, readable rendering and the station wildcard check.

use serde_json::Value;

/// Keys of a statement whose value may be a string or a list, and whose order carries no meaning.
const LIST_KEYS: [&str; 4] = ["Action", "NotAction", "Resource", "NotResource"];

/// A canonical form: one-element lists and strings are equal, and the order of actions,
/// resources and statements does not count, as in AWS's evaluation.
pub fn normalize(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(obj) = doc.as_object_mut() {
        if let Some(stmts) = obj.get_mut("Statement") {
            let mut list = match stmts.take() {
                Value::Array(a) => a,
                other => vec![other],
            };
            for stmt in &mut list {
                if let Some(s) = stmt.as_object_mut() {
                    for key in LIST_KEYS {
                        if let Some(v) = s.get_mut(key) {
                            let mut items: Vec<Value> = match v.take() {
                                Value::Array(a) => a,
                                other => vec![other],
                            };
                            items.sort_by_key(|a| a.to_string());
                            items.dedup();
                            *v = Value::Array(items);
                        }
                    }
                }
            }
            list.sort_by_key(|a| a.to_string());
            *stmts = Value::Array(list);
        }
    }
    doc
}

/// Whether two policy documents grant the same thing.
pub fn equivalent(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// The compact text sent to AWS.
pub fn to_compact(doc: &Value) -> String {
    serde_json::to_string(doc).expect("a JSON value always serializes")
}

/// Pretty text for plans.
pub fn to_pretty(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).expect("a JSON value always serializes")
}

/// Statements that allow `*` where a station's policy must name its own resources:
/// `Action: "*"`/`"iot:*"`, `Resource: "*"`, or a `*`/`?` in the resource part of an ARN
/// (the account field may be `*`; it cannot reach outside the account).
pub fn wildcards(doc: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let stmts = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(other) => vec![other.clone()],
        None => return found,
    };
    for (i, stmt) in stmts.iter().enumerate() {
        if stmt.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let strings = |key: &str| -> Vec<String> {
            match stmt.get(key) {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        for action in strings("Action") {
            if action.contains('*') {
                found.push(format!("statement {} allows action {action:?}", i + 1));
            }
        }
        if stmt.get("NotAction").is_some() || stmt.get("NotResource").is_some() {
            found.push(format!(
                "statement {} uses NotAction/NotResource, which allows everything not listed",
                i + 1
            ));
        }
        for resource in strings("Resource") {
            if let Some(part) = wildcard_part(&resource) {
                found.push(format!(
                    "statement {} allows resource {resource:?} ({part})",
                    i + 1
                ));
            }
        }
    }
    found
}

fn wildcard_part(resource: &str) -> Option<&'static str> {
    if resource == "*" {
        return Some("every resource");
    }
    // arn:partition:service:region:account:type/name
    let parts: Vec<&str> = resource.splitn(6, ':').collect();
    if parts.len() == 6 {
        if parts[5].contains('*') || parts[5].contains('?') {
            return Some("a wildcard in the resource name");
        }
        if parts[2].contains('*') || parts[3].contains('*') {
            return Some("a wildcard in the service or region");
        }
        None
    } else if resource.contains('*') || resource.contains('?') {
        Some("a wildcard")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_and_list_forms_are_equivalent() {
        let a = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":["r1"]}]});
        let b = json!({"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["iot:Connect"],"Resource":"r1"}});
        assert!(equivalent(&a, &b));
    }

    #[test]
    fn order_of_actions_and_statements_does_not_count() {
        let a = json!({"Statement":[{"Effect":"Allow","Action":["a","b"],"Resource":"r"},{"Effect":"Allow","Action":"c","Resource":"s"}]});
        let b = json!({"Statement":[{"Effect":"Allow","Action":"c","Resource":"s"},{"Effect":"Allow","Action":["b","a"],"Resource":"r"}]});
        assert!(equivalent(&a, &b));
    }

    #[test]
    fn a_different_resource_differs() {
        let a = json!({"Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"client/st000"}]});
        let b = json!({"Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"client/st001"}]});
        assert!(!equivalent(&a, &b));
    }

    #[test]
    fn wildcards_are_found() {
        let doc = json!({"Statement":[
            {"Effect":"Allow","Action":"iot:*","Resource":"*"},
            {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:eu-west-1:*:client/st000"},
            {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:eu-west-1:1:topic/up/*"}
        ]});
        let found = wildcards(&doc);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("iot:*"));
        assert!(found[1].contains("every resource"));
        assert!(found[2].contains("topic/up/*"));
    }
}
