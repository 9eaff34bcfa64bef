//! The one gateway to AWS: domain types, the `Cloud` trait, the AWS SDK implementation and an in-memory fake.
//!
//! Every `aws_sdk_*` import lives below this module. Rate limiting, retries and call statistics
//! live in [`aws`], so everything above it speaks only in domain types.

pub mod aws;
pub mod fake;
pub mod limiter;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use serde::Serialize;

/// An IoT thing as the account holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Thing {
    pub name: String,
    pub attributes: BTreeMap<String, String>,
}

/// Certificate status as AWS IoT reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CertStatus {
    Active,
    Inactive,
    Revoked,
    PendingTransfer,
    PendingActivation,
    RegisterInactive,
    Other(String),
}

impl CertStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "ACTIVE" => Self::Active,
            "INACTIVE" => Self::Inactive,
            "REVOKED" => Self::Revoked,
            "PENDING_TRANSFER" => Self::PendingTransfer,
            "PENDING_ACTIVATION" => Self::PendingActivation,
            "REGISTER_INACTIVE" => Self::RegisterInactive,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
            Self::Revoked => "REVOKED",
            Self::PendingTransfer => "PENDING_TRANSFER",
            Self::PendingActivation => "PENDING_ACTIVATION",
            Self::RegisterInactive => "REGISTER_INACTIVE",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for CertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device certificate in the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Certificate {
    /// The SHA-256 fingerprint of the certificate's DER encoding, in hex.
    pub id: String,
    pub arn: String,
    pub status: CertStatus,
}

/// A policy's default version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    pub document: String,
    pub default_version_id: String,
}

/// One version of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyVersion {
    pub version_id: String,
    pub is_default: bool,
    /// Creation time, seconds since the epoch (orders versions).
    pub created: i64,
}

/// Secret text (a private key): never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// The secret itself, for writing to its file.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A certificate just created with its key pair, as CreateKeysAndCertificate returns it.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    pub id: String,
    pub arn: String,
    pub certificate_pem: String,
    pub public_key_pem: String,
    pub private_key_pem: Secret,
}

/// A certificate AWS IoT signed for a local key (CSR mode).
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub id: String,
    pub arn: String,
    pub certificate_pem: String,
}

/// An ACM certificate as ListCertificates summarises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmCertificate {
    pub arn: String,
    pub domain_name: String,
    /// PENDING_VALIDATION, ISSUED, INACTIVE, EXPIRED, VALIDATION_TIMED_OUT, REVOKED or FAILED.
    pub status: String,
}

/// A DNS record (CNAME): its name and value, both without the trailing dot, lower case.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct DnsRecord {
    pub name: String,
    pub value: String,
}

impl DnsRecord {
    pub fn new(name: &str, value: &str) -> Self {
        Self {
            name: dns_name(name),
            value: dns_name(value),
        }
    }
}

/// A DNS name compared as DNS compares it: lower case, no trailing dot.
pub fn dns_name(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// An ACM certificate's details (DescribeCertificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmCertificateDetail {
    pub arn: String,
    pub domain_name: String,
    pub status: String,
    /// DNS validation CNAMEs, one per name on the certificate; AWS fills them in a few seconds
    /// after RequestCertificate, so this can be empty at first.
    pub validation_records: Vec<DnsRecord>,
    pub failure_reason: Option<String>,
}

/// A Route 53 hosted zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostedZone {
    /// The id without `/hostedzone/`.
    pub id: String,
    /// The zone's name, lower case, without the trailing dot.
    pub name: String,
}

/// A CNAME record set as Route 53 holds it (DELETE needs the exact TTL and value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CnameRecord {
    pub value: String,
    pub ttl: i64,
}

/// An IoT domain configuration (DescribeDomainConfiguration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainConfiguration {
    pub name: String,
    pub domain_name: String,
    pub certificate_arns: Vec<String>,
    /// ENABLED or DISABLED.
    pub status: String,
    pub service_type: String,
    pub tls_policy: Option<String>,
}

/// What a new domain configuration is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDomainConfiguration<'a> {
    pub name: &'a str,
    pub domain_name: &'a str,
    pub certificate_arn: &'a str,
    pub tls_policy: &'a str,
}

/// Who and where the credentials act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub account_id: String,
    pub region: String,
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudError {
    #[error("{operation} failed: {code}: {message}")]
    Api {
        operation: &'static str,
        code: String,
        message: String,
    },
    #[error("{operation} failed: {message}")]
    Transport {
        operation: &'static str,
        message: String,
    },
    #[error("{operation} was still throttled or failing when the retry deadline passed: {last}")]
    GaveUp {
        operation: &'static str,
        last: String,
    },
    #[error("injected fault: the process stops after API call {0} (PROVISION_FAULT_AFTER_CALLS)")]
    Injected(u64),
}

impl CloudError {
    /// The AWS error code, when AWS answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some("ResourceNotFoundException")
    }

    pub fn is_already_exists(&self) -> bool {
        self.code() == Some("ResourceAlreadyExistsException")
    }
}

pub type Result<T> = std::result::Result<T, CloudError>;

/// Everything provision asks of AWS IoT, in domain terms.
///
/// Implementations: [`aws::AwsCloud`] (the SDK, with rate limiting and retries) and
/// [`fake::FakeCloud`] (in memory, for tests of the diff and apply engines).
pub trait Cloud: Send + Sync {
    fn account(&self) -> impl Future<Output = Result<Account>> + Send;

    /// Things carrying `attribute = value` (the fleet's ownership mark), with their attributes.
    fn list_things_with_attribute(
        &self,
        attribute: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<Thing>>> + Send;
    fn describe_thing(&self, name: &str) -> impl Future<Output = Result<Option<Thing>>> + Send;
    fn list_certificates(&self) -> impl Future<Output = Result<Vec<Certificate>>> + Send;
    /// Names of all policies in the account.
    fn list_policies(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Principal ARNs attached to a thing.
    fn list_thing_principals(
        &self,
        thing: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Policy names attached to a principal (certificate ARN).
    fn list_attached_policies(
        &self,
        principal_arn: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn get_policy(&self, name: &str)
        -> impl Future<Output = Result<Option<PolicyDocument>>> + Send;
    fn list_policy_versions(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<PolicyVersion>>> + Send;

    fn create_thing(
        &self,
        name: &str,
        attributes: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Make the thing's attributes exactly `attributes` (others removed).
    fn set_thing_attributes(
        &self,
        name: &str,
        attributes: &BTreeMap<String, String>,
        remove: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
    fn create_policy(&self, name: &str, document: &str) -> impl Future<Output = Result<()>> + Send;
    fn create_policy_version(
        &self,
        name: &str,
        document: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn delete_policy_version(
        &self,
        name: &str,
        version_id: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Create a key pair and certificate, INACTIVE.
    fn create_keys_and_certificate(&self) -> impl Future<Output = Result<NewCertificate>> + Send;
    /// Have AWS IoT sign a CSR; the certificate is INACTIVE.
    fn create_certificate_from_csr(
        &self,
        csr_pem: &str,
    ) -> impl Future<Output = Result<IssuedCertificate>> + Send;
    fn set_certificate_status(
        &self,
        certificate_id: &str,
        status: CertStatus,
    ) -> impl Future<Output = Result<()>> + Send;
    fn attach_thing_principal(
        &self,
        thing: &str,
        principal_arn: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn detach_thing_principal(
        &self,
        thing: &str,
        principal_arn: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn attach_policy(
        &self,
        policy: &str,
        principal_arn: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn detach_policy(
        &self,
        policy: &str,
        principal_arn: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The account's endpoint host name of this type (`iot:Data-ATS` for MQTT devices).
    fn describe_endpoint(&self, endpoint_type: &str)
        -> impl Future<Output = Result<String>> + Send;
    /// Delete a certificate (it must be INACTIVE and attached to nothing).
    fn delete_certificate(&self, certificate_id: &str) -> impl Future<Output = Result<()>> + Send;
    fn delete_thing(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Delete a policy (its non-default versions must be deleted first).
    fn delete_policy(&self, name: &str) -> impl Future<Output = Result<()>> + Send;

    // --- ACM (the custom domain's server certificate) ---
    /// Every certificate in the account and region, any status.
    fn acm_list_certificates(&self) -> impl Future<Output = Result<Vec<AcmCertificate>>> + Send;
    fn acm_list_tags(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>>> + Send;
    fn acm_describe_certificate(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Option<AcmCertificateDetail>>> + Send;
    /// Request a DNS-validated certificate, tagged at creation; the same idempotency token
    /// within an hour returns the same certificate. Returns its ARN.
    fn acm_request_certificate(
        &self,
        domain_name: &str,
        idempotency_token: &str,
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String>> + Send;
    fn acm_delete_certificate(&self, arn: &str) -> impl Future<Output = Result<()>> + Send;

    // --- Route 53 ---
    /// The public hosted zone with exactly this name, if any (an error if several have it).
    fn find_hosted_zone(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<HostedZone>>> + Send;
    fn get_hosted_zone(&self, id: &str) -> impl Future<Output = Result<Option<HostedZone>>> + Send;
    /// The CNAME record set with this name in the zone, if any.
    fn get_cname(
        &self,
        zone_id: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<CnameRecord>>> + Send;
    /// Create or replace a CNAME (UPSERT: idempotent).
    fn upsert_cname(
        &self,
        zone_id: &str,
        name: &str,
        value: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Delete a CNAME exactly as it is (Route 53 needs the value and TTL).
    fn delete_cname(
        &self,
        zone_id: &str,
        name: &str,
        record: &CnameRecord,
    ) -> impl Future<Output = Result<()>> + Send;

    // --- IoT domain configurations ---
    fn describe_domain_configuration(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<DomainConfiguration>>> + Send;
    /// Create a DATA domain configuration (it starts ENABLED).
    fn create_domain_configuration(
        &self,
        config: &NewDomainConfiguration<'_>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Change status (ENABLED / DISABLED) and/or TLS policy in place.
    fn update_domain_configuration(
        &self,
        name: &str,
        enabled: Option<bool>,
        tls_policy: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Delete a domain configuration (AWS requires it DISABLED first).
    fn delete_domain_configuration(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
}
