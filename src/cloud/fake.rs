//! An in-memory AWS IoT account implementing [`Cloud`], for fast tests of the diff and apply engines.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{
    dns_name, Account, AcmCertificate, AcmCertificateDetail, CertStatus, Certificate, Cloud,
    CloudError, CnameRecord, DnsRecord, DomainConfiguration, HostedZone, IssuedCertificate,
    NewCertificate, NewDomainConfiguration, PolicyDocument, PolicyVersion, Result, Secret, Thing,
};

#[derive(Debug, Clone)]
struct Version {
    id: u32,
    document: String,
    created: i64,
}

#[derive(Debug, Clone, Default)]
struct Policy {
    versions: Vec<Version>,
    default: u32,
    next: u32,
}

/// The account's state; public so tests can arrange drift directly.
#[derive(Debug, Default)]
pub struct FakeState {
    pub things: BTreeMap<String, Thing>,
    pub thing_principals: HashMap<String, Vec<String>>,
    pub certificates: BTreeMap<String, Certificate>,
    policies: BTreeMap<String, Policy>,
    pub attached: HashMap<String, Vec<String>>,
    /// Every call made, by API name, in order.
    pub calls: Vec<String>,
    clock: i64,
    /// ACM certificates by ARN.
    pub acm: BTreeMap<String, FakeAcmCert>,
    /// Route 53 zones by id.
    pub zones: BTreeMap<String, FakeZone>,
    /// IoT domain configurations by name.
    pub domain_configurations: BTreeMap<String, DomainConfiguration>,
    /// ACM idempotency tokens seen, with the ARN each returned.
    tokens: HashMap<String, String>,
}

/// An ACM certificate in the fake account. It turns ISSUED when described while its
/// validation CNAME is in a zone (as ACM does once DNS answers).
#[derive(Debug, Clone)]
pub struct FakeAcmCert {
    pub domain_name: String,
    pub status: String,
    pub tags: BTreeMap<String, String>,
}

/// A Route 53 zone in the fake account: its CNAMEs by name.
#[derive(Debug, Clone, Default)]
pub struct FakeZone {
    pub name: String,
    pub cnames: BTreeMap<String, CnameRecord>,
}

/// The validation CNAME the fake ACM asks for, for a domain name.
pub fn fake_validation_record(domain: &str) -> DnsRecord {
    DnsRecord::new(
        &format!("_0123456789abcdef.{domain}"),
        "_fedcba9876543210.acm-validations.aws",
    )
}

/// The fake account's ATS endpoint.
pub fn fake_ats_endpoint() -> String {
    format!("fakeendpoint00-ats.iot.{REGION}.amazonaws.com.cn")
}

/// An in-memory account.
#[derive(Default)]
pub struct FakeCloud {
    pub state: Mutex<FakeState>,
}

const ACCOUNT: &str = "123456789012";
const REGION: &str = "cn-northwest-1";

fn api_err(operation: &'static str, code: &str, message: String) -> CloudError {
    CloudError::Api {
        operation,
        code: code.into(),
        message,
    }
}

impl FakeCloud {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, api: &'static str, f: impl FnOnce(&mut FakeState) -> Result<T>) -> Result<T> {
        let mut s = self.state.lock().expect("fake lock");
        s.calls.push(api.to_string());
        s.clock += 1;
        f(&mut s)
    }

    /// Replace a policy's default document out of band (as an operator in the console would).
    pub fn edit_policy(&self, name: &str, document: &str) {
        let mut s = self.state.lock().unwrap();
        s.clock += 1;
        let clock = s.clock;
        let p = s.policies.get_mut(name).expect("policy exists");
        p.next += 1;
        let id = p.next;
        p.versions.push(Version {
            id,
            document: document.into(),
            created: clock,
        });
        p.default = id;
    }

    pub fn policy_version_count(&self, name: &str) -> usize {
        self.state.lock().unwrap().policies[name].versions.len()
    }

    pub fn default_document(&self, name: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        let p = s.policies.get(name)?;
        p.versions
            .iter()
            .find(|v| v.id == p.default)
            .map(|v| v.document.clone())
    }

    pub fn delete_policy_out_of_band(&self, name: &str) {
        let mut s = self.state.lock().unwrap();
        s.policies.remove(name);
        for list in s.attached.values_mut() {
            list.retain(|p| p != name);
        }
    }

    /// Record a newly issued certificate, INACTIVE, as AWS does with setAsActive=false.
    fn register_inactive(&self, api: &'static str, pem: &str) -> Result<(String, String)> {
        let id = crate::certstore::fingerprint_pem(pem).expect("rcgen writes PEM");
        let arn = format!("arn:aws-cn:iot:{REGION}:{ACCOUNT}:cert/{id}");
        self.with(api, |s| {
            s.certificates.insert(
                id.clone(),
                Certificate {
                    id: id.clone(),
                    arn: arn.clone(),
                    status: CertStatus::Inactive,
                },
            );
            Ok(())
        })?;
        Ok((id, arn))
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Create a hosted zone (as the operator has it); returns its id.
    pub fn add_zone(&self, name: &str) -> String {
        let mut s = self.state.lock().unwrap();
        let id = format!("ZFAKE{:04}", s.zones.len() + 1);
        s.zones.insert(
            id.clone(),
            FakeZone {
                name: dns_name(name),
                cnames: BTreeMap::new(),
            },
        );
        id
    }
}

impl Cloud for FakeCloud {
    async fn account(&self) -> Result<Account> {
        self.with("GetCallerIdentity", |_| {
            Ok(Account {
                account_id: ACCOUNT.into(),
                region: REGION.into(),
            })
        })
    }

    async fn list_things_with_attribute(&self, attribute: &str, value: &str) -> Result<Vec<Thing>> {
        self.with("ListThings", |s| {
            Ok(s.things
                .values()
                .filter(|t| t.attributes.get(attribute).map(String::as_str) == Some(value))
                .cloned()
                .collect())
        })
    }

    async fn describe_thing(&self, name: &str) -> Result<Option<Thing>> {
        self.with("DescribeThing", |s| Ok(s.things.get(name).cloned()))
    }

    async fn list_certificates(&self) -> Result<Vec<Certificate>> {
        self.with("ListCertificates", |s| {
            Ok(s.certificates.values().cloned().collect())
        })
    }

    async fn list_policies(&self) -> Result<Vec<String>> {
        self.with("ListPolicies", |s| Ok(s.policies.keys().cloned().collect()))
    }

    async fn list_thing_principals(&self, thing: &str) -> Result<Vec<String>> {
        self.with("ListThingPrincipals", |s| {
            if !s.things.contains_key(thing) {
                return Err(api_err(
                    "ListThingPrincipals",
                    "ResourceNotFoundException",
                    format!("thing {thing} not found"),
                ));
            }
            Ok(s.thing_principals.get(thing).cloned().unwrap_or_default())
        })
    }

    async fn list_attached_policies(&self, principal_arn: &str) -> Result<Vec<String>> {
        self.with("ListAttachedPolicies", |s| {
            Ok(s.attached.get(principal_arn).cloned().unwrap_or_default())
        })
    }

    async fn get_policy(&self, name: &str) -> Result<Option<PolicyDocument>> {
        self.with("GetPolicy", |s| {
            Ok(s.policies.get(name).map(|p| {
                let v = p
                    .versions
                    .iter()
                    .find(|v| v.id == p.default)
                    .expect("default exists");
                PolicyDocument {
                    document: v.document.clone(),
                    default_version_id: v.id.to_string(),
                }
            }))
        })
    }

    async fn list_policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>> {
        self.with("ListPolicyVersions", |s| {
            let p = s.policies.get(name).ok_or_else(|| {
                api_err(
                    "ListPolicyVersions",
                    "ResourceNotFoundException",
                    format!("policy {name} not found"),
                )
            })?;
            Ok(p.versions
                .iter()
                .map(|v| PolicyVersion {
                    version_id: v.id.to_string(),
                    is_default: v.id == p.default,
                    created: v.created,
                })
                .collect())
        })
    }

    async fn create_thing(&self, name: &str, attributes: &BTreeMap<String, String>) -> Result<()> {
        self.with("CreateThing", |s| {
            if let Some(t) = s.things.get(name) {
                if &t.attributes != attributes {
                    return Err(api_err(
                        "CreateThing",
                        "ResourceAlreadyExistsException",
                        format!("thing {name} already exists with different attributes"),
                    ));
                }
                return Ok(());
            }
            s.things.insert(
                name.into(),
                Thing {
                    name: name.into(),
                    attributes: attributes.clone(),
                },
            );
            Ok(())
        })
    }

    async fn set_thing_attributes(
        &self,
        name: &str,
        attributes: &BTreeMap<String, String>,
        _remove: &[String],
    ) -> Result<()> {
        self.with("UpdateThing", |s| {
            let t = s.things.get_mut(name).ok_or_else(|| {
                api_err(
                    "UpdateThing",
                    "ResourceNotFoundException",
                    format!("thing {name} not found"),
                )
            })?;
            t.attributes = attributes.clone();
            Ok(())
        })
    }

    async fn create_policy(&self, name: &str, document: &str) -> Result<()> {
        self.with("CreatePolicy", |s| {
            if s.policies.contains_key(name) {
                return Err(api_err(
                    "CreatePolicy",
                    "ResourceAlreadyExistsException",
                    format!("policy {name} already exists"),
                ));
            }
            let clock = s.clock;
            s.policies.insert(
                name.into(),
                Policy {
                    versions: vec![Version {
                        id: 1,
                        document: document.into(),
                        created: clock,
                    }],
                    default: 1,
                    next: 1,
                },
            );
            Ok(())
        })
    }

    async fn create_policy_version(&self, name: &str, document: &str) -> Result<()> {
        self.with("CreatePolicyVersion", |s| {
            let clock = s.clock;
            let p = s.policies.get_mut(name).ok_or_else(|| {
                api_err(
                    "CreatePolicyVersion",
                    "ResourceNotFoundException",
                    format!("policy {name} not found"),
                )
            })?;
            if p.versions.len() >= 5 {
                return Err(api_err(
                    "CreatePolicyVersion",
                    "VersionsLimitExceededException",
                    format!("policy {name} already has 5 versions"),
                ));
            }
            p.next += 1;
            let id = p.next;
            p.versions.push(Version {
                id,
                document: document.into(),
                created: clock,
            });
            p.default = id;
            Ok(())
        })
    }

    async fn delete_policy_version(&self, name: &str, version_id: &str) -> Result<()> {
        self.with("DeletePolicyVersion", |s| {
            let p = s.policies.get_mut(name).ok_or_else(|| {
                api_err(
                    "DeletePolicyVersion",
                    "ResourceNotFoundException",
                    format!("policy {name} not found"),
                )
            })?;
            if p.default.to_string() == version_id {
                return Err(api_err(
                    "DeletePolicyVersion",
                    "DeleteConflictException",
                    "cannot delete the default version".into(),
                ));
            }
            p.versions.retain(|v| v.id.to_string() != version_id);
            Ok(())
        })
    }

    async fn create_keys_and_certificate(&self) -> Result<NewCertificate> {
        let key = rcgen::KeyPair::generate().map_err(|e| CloudError::Transport {
            operation: "CreateKeysAndCertificate",
            message: e.to_string(),
        })?;
        let pem = rcgen::CertificateParams::new(Vec::<String>::new())
            .and_then(|p| p.self_signed(&key))
            .map_err(|e| CloudError::Transport {
                operation: "CreateKeysAndCertificate",
                message: e.to_string(),
            })?
            .pem();
        let (id, arn) = self.register_inactive("CreateKeysAndCertificate", &pem)?;
        Ok(NewCertificate {
            id,
            arn,
            certificate_pem: pem,
            public_key_pem: key.public_key_pem(),
            private_key_pem: Secret::new(key.serialize_pem()),
        })
    }

    async fn create_certificate_from_csr(&self, csr_pem: &str) -> Result<IssuedCertificate> {
        let fail = |e: rcgen::Error| CloudError::Api {
            operation: "CreateCertificateFromCsr",
            code: "InvalidRequestException".into(),
            message: e.to_string(),
        };
        let params = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(fail)?;
        let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
        let issuer = rcgen::Issuer::new(
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?,
            ca_key,
        );
        let pem = params.signed_by(&issuer).map_err(fail)?.pem();
        let (id, arn) = self.register_inactive("CreateCertificateFromCsr", &pem)?;
        Ok(IssuedCertificate {
            id,
            arn,
            certificate_pem: pem,
        })
    }

    async fn set_certificate_status(&self, certificate_id: &str, status: CertStatus) -> Result<()> {
        self.with("UpdateCertificate", |s| {
            let c = s.certificates.get_mut(certificate_id).ok_or_else(|| {
                api_err(
                    "UpdateCertificate",
                    "ResourceNotFoundException",
                    format!("certificate {certificate_id} not found"),
                )
            })?;
            if c.status == CertStatus::Revoked {
                return Err(api_err(
                    "UpdateCertificate",
                    "CertificateStateException",
                    "certificate is revoked".into(),
                ));
            }
            c.status = status;
            Ok(())
        })
    }

    async fn attach_thing_principal(&self, thing: &str, principal_arn: &str) -> Result<()> {
        self.with("AttachThingPrincipal", |s| {
            if !s.things.contains_key(thing) {
                return Err(api_err(
                    "AttachThingPrincipal",
                    "ResourceNotFoundException",
                    format!("thing {thing} not found"),
                ));
            }
            let list = s.thing_principals.entry(thing.into()).or_default();
            if !list.iter().any(|p| p == principal_arn) {
                list.push(principal_arn.into());
            }
            Ok(())
        })
    }

    async fn detach_thing_principal(&self, thing: &str, principal_arn: &str) -> Result<()> {
        self.with("DetachThingPrincipal", |s| {
            if let Some(list) = s.thing_principals.get_mut(thing) {
                list.retain(|p| p != principal_arn);
            }
            Ok(())
        })
    }

    async fn attach_policy(&self, policy: &str, principal_arn: &str) -> Result<()> {
        self.with("AttachPolicy", |s| {
            if !s.policies.contains_key(policy) {
                return Err(api_err(
                    "AttachPolicy",
                    "ResourceNotFoundException",
                    format!("policy {policy} not found"),
                ));
            }
            let list = s.attached.entry(principal_arn.into()).or_default();
            if !list.iter().any(|p| p == policy) {
                list.push(policy.into());
            }
            Ok(())
        })
    }

    async fn detach_policy(&self, policy: &str, principal_arn: &str) -> Result<()> {
        self.with("DetachPolicy", |s| {
            if let Some(list) = s.attached.get_mut(principal_arn) {
                list.retain(|p| p != policy);
            }
            Ok(())
        })
    }

    async fn describe_endpoint(&self, endpoint_type: &str) -> Result<String> {
        self.with("DescribeEndpoint", |_| match endpoint_type {
            "iot:Data-ATS" => Ok(fake_ats_endpoint()),
            other => Err(api_err(
                "DescribeEndpoint",
                "InvalidRequestException",
                format!("unsupported endpoint type {other}"),
            )),
        })
    }

    async fn delete_certificate(&self, certificate_id: &str) -> Result<()> {
        self.with("DeleteCertificate", |s| {
            let c = s.certificates.get(certificate_id).ok_or_else(|| {
                api_err(
                    "DeleteCertificate",
                    "ResourceNotFoundException",
                    format!("certificate {certificate_id} not found"),
                )
            })?;
            if c.status == CertStatus::Active {
                return Err(api_err(
                    "DeleteCertificate",
                    "CertificateStateException",
                    "the certificate is ACTIVE".into(),
                ));
            }
            let arn = c.arn.clone();
            if s.thing_principals.values().any(|l| l.contains(&arn))
                || s.attached.get(&arn).is_some_and(|l| !l.is_empty())
            {
                return Err(api_err(
                    "DeleteCertificate",
                    "DeleteConflictException",
                    "the certificate is attached".into(),
                ));
            }
            s.certificates.remove(certificate_id);
            Ok(())
        })
    }

    async fn delete_thing(&self, name: &str) -> Result<()> {
        self.with("DeleteThing", |s| {
            s.things.remove(name);
            s.thing_principals.remove(name);
            Ok(())
        })
    }

    async fn delete_policy(&self, name: &str) -> Result<()> {
        self.with("DeletePolicy", |s| {
            if s.attached.values().any(|l| l.iter().any(|p| p == name)) {
                return Err(api_err(
                    "DeletePolicy",
                    "DeleteConflictException",
                    format!("policy {name} is attached"),
                ));
            }
            let p = s.policies.get(name).ok_or_else(|| {
                api_err(
                    "DeletePolicy",
                    "ResourceNotFoundException",
                    format!("policy {name} not found"),
                )
            })?;
            if p.versions.len() > 1 {
                return Err(api_err(
                    "DeletePolicy",
                    "DeleteConflictException",
                    format!("policy {name} has non-default versions"),
                ));
            }
            s.policies.remove(name);
            Ok(())
        })
    }

    async fn acm_list_certificates(&self) -> Result<Vec<AcmCertificate>> {
        self.with("acm:ListCertificates", |s| {
            Ok(s.acm
                .iter()
                .map(|(arn, c)| AcmCertificate {
                    arn: arn.clone(),
                    domain_name: c.domain_name.clone(),
                    status: c.status.clone(),
                })
                .collect())
        })
    }

    async fn acm_list_tags(&self, arn: &str) -> Result<BTreeMap<String, String>> {
        self.with("acm:ListTagsForCertificate", |s| {
            s.acm.get(arn).map(|c| c.tags.clone()).ok_or_else(|| {
                api_err(
                    "acm:ListTagsForCertificate",
                    "ResourceNotFoundException",
                    format!("certificate {arn} not found"),
                )
            })
        })
    }

    async fn acm_describe_certificate(&self, arn: &str) -> Result<Option<AcmCertificateDetail>> {
        self.with("acm:DescribeCertificate", |s| {
            let Some(c) = s.acm.get(arn).cloned() else {
                return Ok(None);
            };
            let record = fake_validation_record(&c.domain_name);
            let validated = s.zones.values().any(|z| {
                z.cnames
                    .get(&record.name)
                    .is_some_and(|r| r.value == record.value)
            });
            let mut status = c.status.clone();
            if status == "PENDING_VALIDATION" && validated {
                status = "ISSUED".into();
                s.acm.get_mut(arn).expect("exists").status = status.clone();
            }
            Ok(Some(AcmCertificateDetail {
                arn: arn.to_string(),
                domain_name: c.domain_name.clone(),
                status,
                validation_records: vec![record],
                failure_reason: None,
            }))
        })
    }

    async fn acm_request_certificate(
        &self,
        domain_name: &str,
        idempotency_token: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        self.with("acm:RequestCertificate", |s| {
            if let Some(arn) = s.tokens.get(idempotency_token) {
                if s.acm.contains_key(arn) {
                    return Ok(arn.clone());
                }
            }
            let arn = format!(
                "arn:aws-cn:acm:{REGION}:{ACCOUNT}:certificate/fake-{:04}",
                s.clock
            );
            s.acm.insert(
                arn.clone(),
                FakeAcmCert {
                    domain_name: dns_name(domain_name),
                    status: "PENDING_VALIDATION".into(),
                    tags: tags.clone(),
                },
            );
            s.tokens.insert(idempotency_token.to_string(), arn.clone());
            Ok(arn)
        })
    }

    async fn acm_delete_certificate(&self, arn: &str) -> Result<()> {
        self.with("acm:DeleteCertificate", |s| {
            if s.domain_configurations
                .values()
                .any(|d| d.certificate_arns.iter().any(|a| a == arn))
            {
                return Err(api_err(
                    "acm:DeleteCertificate",
                    "ResourceInUseException",
                    format!("certificate {arn} is in use"),
                ));
            }
            s.acm.remove(arn);
            Ok(())
        })
    }

    async fn find_hosted_zone(&self, name: &str) -> Result<Option<HostedZone>> {
        self.with("route53:ListHostedZonesByName", |s| {
            Ok(s.zones
                .iter()
                .find(|(_, z)| z.name == dns_name(name))
                .map(|(id, z)| HostedZone {
                    id: id.clone(),
                    name: z.name.clone(),
                }))
        })
    }

    async fn get_hosted_zone(&self, id: &str) -> Result<Option<HostedZone>> {
        self.with("route53:GetHostedZone", |s| {
            Ok(s.zones.get(id).map(|z| HostedZone {
                id: id.to_string(),
                name: z.name.clone(),
            }))
        })
    }

    async fn get_cname(&self, zone_id: &str, name: &str) -> Result<Option<CnameRecord>> {
        self.with("route53:ListResourceRecordSets", |s| {
            let z = s.zones.get(zone_id).ok_or_else(|| {
                api_err(
                    "route53:ListResourceRecordSets",
                    "NoSuchHostedZone",
                    format!("no hosted zone {zone_id}"),
                )
            })?;
            Ok(z.cnames.get(&dns_name(name)).cloned())
        })
    }

    async fn upsert_cname(&self, zone_id: &str, name: &str, value: &str) -> Result<()> {
        self.with("route53:ChangeResourceRecordSets", |s| {
            let z = s.zones.get_mut(zone_id).ok_or_else(|| {
                api_err(
                    "route53:ChangeResourceRecordSets",
                    "NoSuchHostedZone",
                    format!("no hosted zone {zone_id}"),
                )
            })?;
            z.cnames.insert(
                dns_name(name),
                CnameRecord {
                    value: dns_name(value),
                    ttl: 300,
                },
            );
            Ok(())
        })
    }

    async fn delete_cname(&self, zone_id: &str, name: &str, record: &CnameRecord) -> Result<()> {
        self.with("route53:ChangeResourceRecordSets", |s| {
            let z = s.zones.get_mut(zone_id).ok_or_else(|| {
                api_err(
                    "route53:ChangeResourceRecordSets",
                    "NoSuchHostedZone",
                    format!("no hosted zone {zone_id}"),
                )
            })?;
            if z.cnames.get(&dns_name(name)) != Some(record) {
                return Err(api_err(
                    "route53:ChangeResourceRecordSets",
                    "InvalidChangeBatch",
                    format!("no CNAME {name} with that value and TTL"),
                ));
            }
            z.cnames.remove(&dns_name(name));
            Ok(())
        })
    }

    async fn describe_domain_configuration(
        &self,
        name: &str,
    ) -> Result<Option<DomainConfiguration>> {
        self.with("DescribeDomainConfiguration", |s| {
            Ok(s.domain_configurations.get(name).cloned())
        })
    }

    async fn create_domain_configuration(&self, config: &NewDomainConfiguration<'_>) -> Result<()> {
        self.with("CreateDomainConfiguration", |s| {
            if s.domain_configurations.contains_key(config.name) {
                return Err(api_err(
                    "CreateDomainConfiguration",
                    "ResourceAlreadyExistsException",
                    format!("domain configuration {} already exists", config.name),
                ));
            }
            if s.acm.get(config.certificate_arn).map(|c| c.status.as_str()) != Some("ISSUED") {
                return Err(api_err(
                    "CreateDomainConfiguration",
                    "InvalidRequestException",
                    format!("certificate {} is not ISSUED", config.certificate_arn),
                ));
            }
            s.domain_configurations.insert(
                config.name.to_string(),
                DomainConfiguration {
                    name: config.name.to_string(),
                    domain_name: dns_name(config.domain_name),
                    certificate_arns: vec![config.certificate_arn.to_string()],
                    status: "ENABLED".into(),
                    service_type: "DATA".into(),
                    tls_policy: Some(config.tls_policy.to_string()),
                },
            );
            Ok(())
        })
    }

    async fn update_domain_configuration(
        &self,
        name: &str,
        enabled: Option<bool>,
        tls_policy: Option<&str>,
    ) -> Result<()> {
        self.with("UpdateDomainConfiguration", |s| {
            let c = s.domain_configurations.get_mut(name).ok_or_else(|| {
                api_err(
                    "UpdateDomainConfiguration",
                    "ResourceNotFoundException",
                    format!("domain configuration {name} not found"),
                )
            })?;
            if let Some(e) = enabled {
                c.status = if e { "ENABLED" } else { "DISABLED" }.into();
            }
            if let Some(p) = tls_policy {
                c.tls_policy = Some(p.to_string());
            }
            Ok(())
        })
    }

    async fn delete_domain_configuration(&self, name: &str) -> Result<()> {
        self.with("DeleteDomainConfiguration", |s| {
            match s.domain_configurations.get(name) {
                None => Err(api_err(
                    "DeleteDomainConfiguration",
                    "ResourceNotFoundException",
                    format!("domain configuration {name} not found"),
                )),
                Some(c) if c.status == "ENABLED" => Err(api_err(
                    "DeleteDomainConfiguration",
                    "InvalidRequestException",
                    format!("domain configuration {name} is ENABLED: disable it first"),
                )),
                Some(_) => {
                    s.domain_configurations.remove(name);
                    Ok(())
                }
            }
        })
    }
}
