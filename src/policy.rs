//! IoT policy documents: semantic comparison and readable rendering.

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
    // Identical documents (the converged case) need no normalizing.
    a == b || normalize(a) == normalize(b)
}

/// The compact text sent to AWS.
pub fn to_compact(doc: &Value) -> String {
    serde_json::to_string(doc).expect("a JSON value always serializes")
}

/// Pretty text for plans.
pub fn to_pretty(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).expect("a JSON value always serializes")
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
}
