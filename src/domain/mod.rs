//! The custom MQTT domain: reading its ACM certificate, Route 53 records and IoT domain configuration, executing its plan steps, and the per-fleet endpoint file.
//!
//! What provision owns is marked on the ACM certificate: tags `provision_fleet=<fleet>`, plus the
//! domain configuration and hosted zone it serves, so that a domain removed from the fleet file
//! can still be found (and deleted with `--prune`).

pub mod apply;
pub mod endpoint;
pub mod observe;

use sha2::{Digest, Sha256};

pub use observe::{observe, LeftoverDomain, ObservedCurrent, ObservedDomain, OwnedCert};

/// Tag naming the fleet that owns an ACM certificate (same key as the things' attribute).
pub const FLEET_TAG: &str = crate::config::OWNER_ATTRIBUTE;
/// Tag naming the IoT domain configuration the certificate serves.
pub const CONFIGURATION_TAG: &str = "provision_domain_configuration";
/// Tag naming the Route 53 hosted zone holding the certificate's records.
pub const ZONE_TAG: &str = "provision_hosted_zone";

/// The AWS endpoint type MQTT devices with X.509 certificates connect to.
pub const DATA_ATS: &str = "iot:Data-ATS";

/// ACM idempotency token for the `generation`-th certificate this fleet requests for `name`
/// (ACM: 1–32 word characters; the same token within an hour returns the same certificate, so a
/// retried or interrupted request never makes a second one).
pub fn idempotency_token(fleet: &str, name: &str, generation: usize) -> String {
    let digest = Sha256::digest(format!("provision/{fleet}/{name}/{generation}").as_bytes());
    hex::encode(digest)[..32].to_string()
}

/// ACM statuses of a certificate that may still serve (or become able to).
pub fn usable(status: &str) -> bool {
    matches!(status, "ISSUED" | "PENDING_VALIDATION")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_short_and_distinct() {
        let a = idempotency_token("solar", "mqtt.example.com", 0);
        assert_eq!(a, idempotency_token("solar", "mqtt.example.com", 0));
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, idempotency_token("solar", "mqtt.example.com", 1));
        assert_ne!(a, idempotency_token("other", "mqtt.example.com", 0));
    }
}
