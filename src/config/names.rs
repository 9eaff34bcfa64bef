//! Name rules AWS IoT enforces (thing, policy, attribute, region), checked offline before any API call.

/// Thing names: 1–128 characters of `[a-zA-Z0-9:_-]`.
pub fn check_thing_name(name: &str) -> Result<(), String> {
    check_chars(name, 1, 128, "a-z A-Z 0-9 : _ -", |c| {
        c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')
    })
}

/// Policy names: 1–128 characters of `[\w+=,.@-]`.
pub fn check_policy_name(name: &str) -> Result<(), String> {
    check_chars(name, 1, 128, "a-z A-Z 0-9 _ + = , . @ -", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
    })
}

/// Fleet names end up in policy names and in an attribute value: 1–64 of `[a-zA-Z0-9_-]`.
pub fn check_fleet_name(name: &str) -> Result<(), String> {
    check_chars(name, 1, 64, "a-z A-Z 0-9 _ -", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
    })
}

/// Thing attribute names: 1–128 of `[a-zA-Z0-9_.,@/:#-]`.
pub fn check_attribute_name(name: &str) -> Result<(), String> {
    check_chars(name, 1, 128, "a-z A-Z 0-9 _ . , @ / : # -", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ',' | '@' | '/' | ':' | '#' | '-')
    })
}

/// Thing attribute values: up to 800 of `[a-zA-Z0-9_.,@/:#=\[\]-]`.
pub fn check_attribute_value(value: &str) -> Result<(), String> {
    check_chars(value, 0, 800, "a-z A-Z 0-9 _ . , @ / : # = [ ] -", |c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '_' | '.' | ',' | '@' | '/' | ':' | '#' | '=' | '[' | ']' | '-'
            )
    })
}

/// AWS region names such as `eu-west-1`, `cn-northwest-1`, `us-gov-west-1`.
pub fn check_region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if ok {
        Ok(())
    } else {
        Err("expected a region name such as eu-west-1 or cn-northwest-1".into())
    }
}

/// The AWS partition a region belongs to.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else {
        "aws"
    }
}

/// Template-facing names: letters, digits and `_`, not starting with a digit.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_chars(
    s: &str,
    min: usize,
    max: usize,
    allowed: &str,
    ok: impl Fn(char) -> bool,
) -> Result<(), String> {
    let n = s.chars().count();
    if n < min {
        return Err(if min == 1 {
            "must not be empty".into()
        } else {
            format!("must be at least {min} characters")
        });
    }
    if n > max {
        return Err(format!("is {n} characters long; at most {max} are allowed"));
    }
    if let Some(bad) = s.chars().find(|c| !ok(*c)) {
        return Err(format!(
            "character {bad:?} is not allowed (allowed: {allowed})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_names() {
        assert!(check_thing_name("st000").is_ok());
        assert!(check_thing_name("a:b_c-d").is_ok());
        assert_eq!(check_thing_name("").unwrap_err(), "must not be empty");
        assert!(check_thing_name("st 0").unwrap_err().contains("' '"));
        assert!(check_thing_name(&"x".repeat(129))
            .unwrap_err()
            .contains("129 characters"));
        assert!(check_thing_name(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn policy_names_reject_colon() {
        assert!(check_policy_name("fleet-a:b").is_err());
        assert!(check_policy_name("fleet-st000").is_ok());
    }

    #[test]
    fn attribute_values() {
        assert!(check_attribute_value("plant-a").is_ok());
        assert!(check_attribute_value("").is_ok());
        assert!(check_attribute_value("a\"b").is_err());
        assert!(check_attribute_value("a b").is_err());
    }

    #[test]
    fn regions_and_partitions() {
        assert!(check_region("cn-northwest-1").is_ok());
        assert!(check_region("us-gov-west-1").is_ok());
        assert!(check_region("mars").is_err());
        assert!(check_region("eu-west-").is_err());
        assert_eq!(partition_of("cn-northwest-1"), "aws-cn");
        assert_eq!(partition_of("eu-west-1"), "aws");
        assert_eq!(partition_of("us-gov-east-1"), "aws-us-gov");
    }
}
