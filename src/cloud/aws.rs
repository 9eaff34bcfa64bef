//! The AWS SDK implementation of [`Cloud`]: every call paced by the limiter, retried on throttling and transient faults.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_iot::error::ProvideErrorMetadata;
use aws_sdk_iot::types::{AttributePayload, CertificateStatus};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::time::Instant;

use super::limiter::{CallStats, Limiter};
use super::{
    dns_name, Account, AcmCertificate, AcmCertificateDetail, CertStatus, Certificate, Cloud,
    CloudError, CnameRecord, DnsRecord, DomainConfiguration, HostedZone, IssuedCertificate,
    NewCertificate, NewDomainConfiguration, PolicyDocument, PolicyVersion, Result, Secret, Thing,
};

/// How the AWS clients are set up.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    pub profile: Option<String>,
    pub region: Option<String>,
    /// Scale applied to the default quotas (1.0 = AWS defaults).
    pub rate_scale: Option<f64>,
    /// Per-API rate overrides, requests per second.
    pub rates: BTreeMap<String, f64>,
    /// How long throttled or transiently failing calls are retried.
    pub retry_deadline: Option<Duration>,
}

/// The region from the environment (`AWS_REGION`, `AWS_DEFAULT_REGION`) or the profile, read
/// offline: the instance metadata service is not asked (validate makes no network call).
pub async fn resolve_region(profile: Option<&str>) -> Option<String> {
    use aws_config::meta::region::RegionProviderChain;
    let mut profile_provider = aws_config::profile::ProfileFileRegionProvider::builder();
    if let Some(p) = profile {
        profile_provider = profile_provider.profile_name(p);
    }
    let chain = RegionProviderChain::first_try(
        aws_config::environment::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(profile_provider.build());
    chain.region().await.map(|r| r.to_string())
}

/// [`Cloud`] backed by the AWS SDK.
pub struct AwsCloud {
    iot: aws_sdk_iot::Client,
    sts: aws_sdk_sts::Client,
    acm: aws_sdk_acm::Client,
    route53: aws_sdk_route53::Client,
    region: String,
    limiter: Arc<Limiter>,
    deadline: Duration,
    calls: AtomicU64,
    fault_after: Option<u64>,
}

/// Transient failures (not throttling) are retried at most this many times.
const MAX_TRANSIENT_RETRIES: u32 = 6;

impl AwsCloud {
    /// Build clients from the standard credential and region chain (`AWS_ENDPOINT_URL` honoured).
    pub async fn connect(opts: &AwsOptions) -> std::result::Result<Self, CloudError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            // Retries are ours (see `call`): the SDK's default gives up after 3 attempts.
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &opts.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        let config = loader.load().await;
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| CloudError::Transport {
                operation: "configuration",
                message: "no AWS region is set: give --region, set AWS_REGION, or pin `region:` in the fleet file".into(),
            })?;
        let fault_after = std::env::var("PROVISION_FAULT_AFTER_CALLS")
            .ok()
            .and_then(|v| v.parse().ok());
        Ok(Self {
            iot: aws_sdk_iot::Client::new(&config),
            sts: aws_sdk_sts::Client::new(&config),
            acm: aws_sdk_acm::Client::new(&config),
            route53: aws_sdk_route53::Client::new(&config),
            region,
            limiter: Arc::new(Limiter::new(opts.rate_scale.unwrap_or(1.0), &opts.rates)),
            deadline: opts.retry_deadline.unwrap_or(Duration::from_secs(600)),
            calls: AtomicU64::new(0),
            fault_after,
        })
    }

    pub fn stats(&self) -> CallStats {
        self.limiter.stats()
    }

    /// Run one API call: wait for its rate slot, retry throttling until the deadline and
    /// transient faults a few times, with jittered exponential backoff.
    async fn call<T, E, F, Fut>(&self, api: &'static str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let mut transient: u32 = 0;
        loop {
            self.limiter.acquire(api).await;
            let outcome = f().await;
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fault_after == Some(n) {
                // Fault injection for crash tests: die as `kill -9` would, right after AWS answered.
                eprintln!("{}", CloudError::Injected(n));
                std::process::abort();
            }
            let err = match outcome {
                Ok(v) => {
                    self.limiter.succeeded(api);
                    return Ok(v);
                }
                Err(e) => e,
            };
            let (error, kind) = classify(api, err);
            attempt += 1;
            match kind {
                Kind::Fatal => return Err(error),
                Kind::Throttled => self.limiter.throttled(api),
                Kind::Transient => {
                    transient += 1;
                    if transient > MAX_TRANSIENT_RETRIES {
                        return Err(error);
                    }
                }
            }
            let backoff = backoff(attempt);
            if started.elapsed() + backoff > self.deadline {
                return Err(CloudError::GaveUp {
                    operation: api,
                    last: error.to_string(),
                });
            }
            tracing::debug!(api, attempt, ?backoff, "retrying: {error}");
            tokio::time::sleep(backoff).await;
        }
    }
}

enum Kind {
    Throttled,
    Transient,
    Fatal,
}

const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "PriorRequestNotComplete",
    "RequestLimitExceeded",
    "SlowDown",
];

fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> (CloudError, Kind)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("Unknown").to_string();
            let message = ctx
                .err()
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}"));
            let kind = if THROTTLING_CODES.contains(&code.as_str()) || status == 429 {
                Kind::Throttled
            } else if status >= 500
                || code == "ServiceUnavailableException"
                || code == "InternalFailureException"
            {
                Kind::Transient
            } else {
                Kind::Fatal
            };
            (
                CloudError::Api {
                    operation,
                    code,
                    message,
                },
                kind,
            )
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => (
            CloudError::Transport {
                operation,
                message: DisplayErrorContext(&err).to_string(),
            },
            Kind::Transient,
        ),
        _ => (
            CloudError::Transport {
                operation,
                message: DisplayErrorContext(&err).to_string(),
            },
            Kind::Fatal,
        ),
    }
}

/// Full-jitter exponential backoff: 50 ms doubling up to 5 s.
fn backoff(attempt: u32) -> Duration {
    let cap = (50u64 << attempt.min(7)).min(5_000);
    // Cheap jitter without a RNG dependency: the clock's sub-millisecond noise.
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_millis(cap / 2 + noise % (cap / 2 + 1))
}

fn not_found_is_none<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

impl Cloud for AwsCloud {
    async fn account(&self) -> Result<Account> {
        let out = self
            .call("GetCallerIdentity", || {
                self.sts.get_caller_identity().send()
            })
            .await?;
        Ok(Account {
            account_id: out.account().unwrap_or_default().to_string(),
            region: self.region.clone(),
        })
    }

    async fn list_things_with_attribute(&self, attribute: &str, value: &str) -> Result<Vec<Thing>> {
        let mut things = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .call("ListThings", || {
                    self.iot
                        .list_things()
                        .attribute_name(attribute)
                        .attribute_value(value)
                        .max_results(250)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            for t in out.things() {
                things.push(Thing {
                    name: t.thing_name().unwrap_or_default().to_string(),
                    attributes: to_btree(t.attributes()),
                });
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(things);
            }
        }
    }

    async fn describe_thing(&self, name: &str) -> Result<Option<Thing>> {
        let out = not_found_is_none(
            self.call("DescribeThing", || {
                self.iot.describe_thing().thing_name(name).send()
            })
            .await,
        )?;
        Ok(out.map(|t| Thing {
            name: t.thing_name().unwrap_or(name).to_string(),
            attributes: to_btree(t.attributes()),
        }))
    }

    async fn list_certificates(&self) -> Result<Vec<Certificate>> {
        let mut certs = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .call("ListCertificates", || {
                    self.iot
                        .list_certificates()
                        .page_size(250)
                        .set_marker(marker.clone())
                        .send()
                })
                .await?;
            for c in out.certificates() {
                certs.push(Certificate {
                    id: c.certificate_id().unwrap_or_default().to_string(),
                    arn: c.certificate_arn().unwrap_or_default().to_string(),
                    status: CertStatus::parse(c.status().map(|s| s.as_str()).unwrap_or("")),
                });
            }
            marker = out.next_marker().map(str::to_string);
            if marker.is_none() || out.certificates().is_empty() {
                return Ok(certs);
            }
        }
    }

    async fn list_policies(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .call("ListPolicies", || {
                    self.iot
                        .list_policies()
                        .page_size(250)
                        .set_marker(marker.clone())
                        .send()
                })
                .await?;
            names.extend(
                out.policies()
                    .iter()
                    .filter_map(|p| p.policy_name().map(str::to_string)),
            );
            marker = out.next_marker().map(str::to_string);
            if marker.is_none() || out.policies().is_empty() {
                return Ok(names);
            }
        }
    }

    async fn list_thing_principals(&self, thing: &str) -> Result<Vec<String>> {
        let mut principals = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .call("ListThingPrincipals", || {
                    self.iot
                        .list_thing_principals()
                        .thing_name(thing)
                        .max_results(250)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            principals.extend(out.principals().iter().cloned());
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(principals);
            }
        }
    }

    async fn list_attached_policies(&self, principal_arn: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .call("ListAttachedPolicies", || {
                    self.iot
                        .list_attached_policies()
                        .target(principal_arn)
                        .page_size(250)
                        .set_marker(marker.clone())
                        .send()
                })
                .await?;
            names.extend(
                out.policies()
                    .iter()
                    .filter_map(|p| p.policy_name().map(str::to_string)),
            );
            marker = out.next_marker().map(str::to_string);
            if marker.is_none() || out.policies().is_empty() {
                return Ok(names);
            }
        }
    }

    async fn get_policy(&self, name: &str) -> Result<Option<PolicyDocument>> {
        let out = not_found_is_none(
            self.call("GetPolicy", || {
                self.iot.get_policy().policy_name(name).send()
            })
            .await,
        )?;
        Ok(out.map(|p| PolicyDocument {
            document: p.policy_document().unwrap_or_default().to_string(),
            default_version_id: p.default_version_id().unwrap_or_default().to_string(),
        }))
    }

    async fn list_policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>> {
        let out = self
            .call("ListPolicyVersions", || {
                self.iot.list_policy_versions().policy_name(name).send()
            })
            .await?;
        Ok(out
            .policy_versions()
            .iter()
            .map(|v| PolicyVersion {
                version_id: v.version_id().unwrap_or_default().to_string(),
                is_default: v.is_default_version(),
                created: v.create_date().map(|d| d.secs()).unwrap_or(0),
            })
            .collect())
    }

    async fn create_thing(&self, name: &str, attributes: &BTreeMap<String, String>) -> Result<()> {
        let payload = AttributePayload::builder()
            .set_attributes(Some(attributes.clone().into_iter().collect()))
            .build();
        self.call("CreateThing", || {
            self.iot
                .create_thing()
                .thing_name(name)
                .attribute_payload(payload.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    async fn set_thing_attributes(
        &self,
        name: &str,
        attributes: &BTreeMap<String, String>,
        _remove: &[String],
    ) -> Result<()> {
        // merge = false replaces the whole attribute set, which removes the others.
        let payload = AttributePayload::builder()
            .set_attributes(Some(attributes.clone().into_iter().collect()))
            .merge(false)
            .build();
        self.call("UpdateThing", || {
            self.iot
                .update_thing()
                .thing_name(name)
                .attribute_payload(payload.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    async fn create_policy(&self, name: &str, document: &str) -> Result<()> {
        self.call("CreatePolicy", || {
            self.iot
                .create_policy()
                .policy_name(name)
                .policy_document(document)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn create_policy_version(&self, name: &str, document: &str) -> Result<()> {
        self.call("CreatePolicyVersion", || {
            self.iot
                .create_policy_version()
                .policy_name(name)
                .policy_document(document)
                .set_as_default(true)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn delete_policy_version(&self, name: &str, version_id: &str) -> Result<()> {
        self.call("DeletePolicyVersion", || {
            self.iot
                .delete_policy_version()
                .policy_name(name)
                .policy_version_id(version_id)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn create_keys_and_certificate(&self) -> Result<NewCertificate> {
        let out = self
            .call("CreateKeysAndCertificate", || {
                self.iot
                    .create_keys_and_certificate()
                    .set_as_active(false)
                    .send()
            })
            .await?;
        let keys = out.key_pair();
        Ok(NewCertificate {
            id: out.certificate_id().unwrap_or_default().to_string(),
            arn: out.certificate_arn().unwrap_or_default().to_string(),
            certificate_pem: out.certificate_pem().unwrap_or_default().to_string(),
            public_key_pem: keys
                .and_then(|k| k.public_key())
                .unwrap_or_default()
                .to_string(),
            private_key_pem: Secret::new(
                keys.and_then(|k| k.private_key())
                    .unwrap_or_default()
                    .to_string(),
            ),
        })
    }

    async fn create_certificate_from_csr(&self, csr_pem: &str) -> Result<IssuedCertificate> {
        let out = self
            .call("CreateCertificateFromCsr", || {
                self.iot
                    .create_certificate_from_csr()
                    .certificate_signing_request(csr_pem)
                    .set_as_active(false)
                    .send()
            })
            .await?;
        Ok(IssuedCertificate {
            id: out.certificate_id().unwrap_or_default().to_string(),
            arn: out.certificate_arn().unwrap_or_default().to_string(),
            certificate_pem: out.certificate_pem().unwrap_or_default().to_string(),
        })
    }

    async fn set_certificate_status(&self, certificate_id: &str, status: CertStatus) -> Result<()> {
        let status = CertificateStatus::from(status.as_str());
        self.call("UpdateCertificate", || {
            self.iot
                .update_certificate()
                .certificate_id(certificate_id)
                .new_status(status.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    async fn attach_thing_principal(&self, thing: &str, principal_arn: &str) -> Result<()> {
        self.call("AttachThingPrincipal", || {
            self.iot
                .attach_thing_principal()
                .thing_name(thing)
                .principal(principal_arn)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn detach_thing_principal(&self, thing: &str, principal_arn: &str) -> Result<()> {
        self.call("DetachThingPrincipal", || {
            self.iot
                .detach_thing_principal()
                .thing_name(thing)
                .principal(principal_arn)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn attach_policy(&self, policy: &str, principal_arn: &str) -> Result<()> {
        self.call("AttachPolicy", || {
            self.iot
                .attach_policy()
                .policy_name(policy)
                .target(principal_arn)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn detach_policy(&self, policy: &str, principal_arn: &str) -> Result<()> {
        self.call("DetachPolicy", || {
            self.iot
                .detach_policy()
                .policy_name(policy)
                .target(principal_arn)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn describe_endpoint(&self, endpoint_type: &str) -> Result<String> {
        let out = self
            .call("DescribeEndpoint", || {
                self.iot
                    .describe_endpoint()
                    .endpoint_type(endpoint_type)
                    .send()
            })
            .await?;
        out.endpoint_address()
            .map(str::to_string)
            .ok_or_else(|| CloudError::Api {
                operation: "DescribeEndpoint",
                code: "EmptyResponse".into(),
                message: format!("no {endpoint_type} endpoint address in the answer"),
            })
    }

    async fn delete_certificate(&self, certificate_id: &str) -> Result<()> {
        self.call("DeleteCertificate", || {
            self.iot
                .delete_certificate()
                .certificate_id(certificate_id)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn delete_thing(&self, name: &str) -> Result<()> {
        self.call("DeleteThing", || {
            self.iot.delete_thing().thing_name(name).send()
        })
        .await?;
        Ok(())
    }

    async fn delete_policy(&self, name: &str) -> Result<()> {
        self.call("DeletePolicy", || {
            self.iot.delete_policy().policy_name(name).send()
        })
        .await?;
        Ok(())
    }
    async fn acm_list_certificates(&self) -> Result<Vec<AcmCertificate>> {
        use aws_sdk_acm::types::CertificateStatus as S;
        let statuses = [
            S::PendingValidation,
            S::Issued,
            S::Inactive,
            S::Expired,
            S::ValidationTimedOut,
            S::Revoked,
            S::Failed,
        ];
        let mut certs = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .call("acm:ListCertificates", || {
                    self.acm
                        .list_certificates()
                        .set_certificate_statuses(Some(statuses.to_vec()))
                        .max_items(1000)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            for c in out.certificate_summary_list() {
                certs.push(AcmCertificate {
                    arn: c.certificate_arn().unwrap_or_default().to_string(),
                    domain_name: dns_name(c.domain_name().unwrap_or_default()),
                    status: c.status().map(|s| s.as_str()).unwrap_or("").to_string(),
                });
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() || out.certificate_summary_list().is_empty() {
                return Ok(certs);
            }
        }
    }

    async fn acm_list_tags(&self, arn: &str) -> Result<BTreeMap<String, String>> {
        let out = self
            .call("acm:ListTagsForCertificate", || {
                self.acm
                    .list_tags_for_certificate()
                    .certificate_arn(arn)
                    .send()
            })
            .await?;
        Ok(out
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }

    async fn acm_describe_certificate(&self, arn: &str) -> Result<Option<AcmCertificateDetail>> {
        let out = not_found_is_none(
            self.call("acm:DescribeCertificate", || {
                self.acm.describe_certificate().certificate_arn(arn).send()
            })
            .await,
        )?;
        Ok(out
            .and_then(|o| o.certificate().cloned())
            .map(|c| AcmCertificateDetail {
                arn: c.certificate_arn().unwrap_or(arn).to_string(),
                domain_name: dns_name(c.domain_name().unwrap_or_default()),
                status: c.status().map(|s| s.as_str()).unwrap_or("").to_string(),
                validation_records: c
                    .domain_validation_options()
                    .iter()
                    .filter_map(|v| v.resource_record())
                    .map(|r| DnsRecord::new(r.name(), r.value()))
                    .collect(),
                failure_reason: c.failure_reason().map(|f| f.as_str().to_string()),
            }))
    }

    async fn acm_request_certificate(
        &self,
        domain_name: &str,
        idempotency_token: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let tags = tags
            .iter()
            .map(|(k, v)| {
                aws_sdk_acm::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| build_err("acm:RequestCertificate", e))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .call("acm:RequestCertificate", || {
                self.acm
                    .request_certificate()
                    .domain_name(domain_name)
                    .validation_method(aws_sdk_acm::types::ValidationMethod::Dns)
                    .idempotency_token(idempotency_token)
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?;
        out.certificate_arn()
            .map(str::to_string)
            .ok_or_else(|| CloudError::Api {
                operation: "acm:RequestCertificate",
                code: "EmptyResponse".into(),
                message: "no certificate ARN in the answer".into(),
            })
    }

    async fn acm_delete_certificate(&self, arn: &str) -> Result<()> {
        self.call("acm:DeleteCertificate", || {
            self.acm.delete_certificate().certificate_arn(arn).send()
        })
        .await?;
        Ok(())
    }

    async fn find_hosted_zone(&self, name: &str) -> Result<Option<HostedZone>> {
        let want = dns_name(name);
        let out = self
            .call("route53:ListHostedZonesByName", || {
                self.route53
                    .list_hosted_zones_by_name()
                    .dns_name(format!("{want}."))
                    .max_items(100)
                    .send()
            })
            .await?;
        // Zones come in name order from `want` on: the matching ones first.
        let matching: Vec<HostedZone> = out
            .hosted_zones()
            .iter()
            .filter(|z| dns_name(z.name()) == want)
            .filter(|z| !z.config().is_some_and(|c| c.private_zone()))
            .map(|z| HostedZone {
                id: zone_id(z.id()),
                name: dns_name(z.name()),
            })
            .collect();
        match matching.len() {
            0 => Ok(None),
            1 => Ok(matching.into_iter().next()),
            n => Err(CloudError::Api {
                operation: "route53:ListHostedZonesByName",
                code: "AmbiguousZone".into(),
                message: format!(
                    "{n} public hosted zones are named {want} ({}); give domain.hosted_zone_id instead",
                    matching.iter().map(|z| z.id.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }

    async fn get_hosted_zone(&self, id: &str) -> Result<Option<HostedZone>> {
        let out = self
            .call("route53:GetHostedZone", || {
                self.route53.get_hosted_zone().id(id).send()
            })
            .await;
        let out = match out {
            Err(e) if e.code() == Some("NoSuchHostedZone") => return Ok(None),
            other => other?,
        };
        Ok(out.hosted_zone().map(|z| HostedZone {
            id: zone_id(z.id()),
            name: dns_name(z.name()),
        }))
    }

    async fn get_cname(&self, zone_id: &str, name: &str) -> Result<Option<CnameRecord>> {
        let want = dns_name(name);
        let out = self
            .call("route53:ListResourceRecordSets", || {
                self.route53
                    .list_resource_record_sets()
                    .hosted_zone_id(zone_id)
                    .start_record_name(format!("{want}."))
                    .start_record_type(aws_sdk_route53::types::RrType::Cname)
                    .max_items(1)
                    .send()
            })
            .await?;
        Ok(out
            .resource_record_sets()
            .iter()
            .find(|r| {
                dns_name(r.name()) == want && *r.r#type() == aws_sdk_route53::types::RrType::Cname
            })
            .map(|r| CnameRecord {
                value: r
                    .resource_records()
                    .first()
                    .map(|v| dns_name(v.value()))
                    .unwrap_or_default(),
                ttl: r.ttl().unwrap_or(CNAME_TTL),
            }))
    }

    async fn upsert_cname(&self, zone_id: &str, name: &str, value: &str) -> Result<()> {
        let batch = cname_change(
            aws_sdk_route53::types::ChangeAction::Upsert,
            name,
            value,
            CNAME_TTL,
        )?;
        self.change_cname(zone_id, batch).await
    }

    async fn delete_cname(&self, zone_id: &str, name: &str, record: &CnameRecord) -> Result<()> {
        let batch = cname_change(
            aws_sdk_route53::types::ChangeAction::Delete,
            name,
            &record.value,
            record.ttl,
        )?;
        self.change_cname(zone_id, batch).await
    }

    async fn describe_domain_configuration(
        &self,
        name: &str,
    ) -> Result<Option<DomainConfiguration>> {
        let out = not_found_is_none(
            self.call("DescribeDomainConfiguration", || {
                self.iot
                    .describe_domain_configuration()
                    .domain_configuration_name(name)
                    .send()
            })
            .await,
        )?;
        Ok(out.map(|c| DomainConfiguration {
            name: c.domain_configuration_name().unwrap_or(name).to_string(),
            domain_name: dns_name(c.domain_name().unwrap_or_default()),
            certificate_arns: c
                .server_certificates()
                .iter()
                .filter_map(|s| s.server_certificate_arn().map(str::to_string))
                .collect(),
            status: c
                .domain_configuration_status()
                .map(|s| s.as_str())
                .unwrap_or("")
                .to_string(),
            service_type: c
                .service_type()
                .map(|s| s.as_str())
                .unwrap_or("DATA")
                .to_string(),
            tls_policy: c
                .tls_config()
                .and_then(|t| t.security_policy())
                .map(str::to_string),
        }))
    }

    async fn create_domain_configuration(&self, config: &NewDomainConfiguration<'_>) -> Result<()> {
        let tls = aws_sdk_iot::types::TlsConfig::builder()
            .security_policy(config.tls_policy)
            .build();
        self.call("CreateDomainConfiguration", || {
            self.iot
                .create_domain_configuration()
                .domain_configuration_name(config.name)
                .domain_name(config.domain_name)
                .server_certificate_arns(config.certificate_arn)
                .service_type(aws_sdk_iot::types::ServiceType::Data)
                .tls_config(tls.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    async fn update_domain_configuration(
        &self,
        name: &str,
        enabled: Option<bool>,
        tls_policy: Option<&str>,
    ) -> Result<()> {
        use aws_sdk_iot::types::DomainConfigurationStatus as S;
        let status = enabled.map(|e| if e { S::Enabled } else { S::Disabled });
        let tls = tls_policy.map(|p| {
            aws_sdk_iot::types::TlsConfig::builder()
                .security_policy(p)
                .build()
        });
        self.call("UpdateDomainConfiguration", || {
            self.iot
                .update_domain_configuration()
                .domain_configuration_name(name)
                .set_domain_configuration_status(status.clone())
                .set_tls_config(tls.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    async fn delete_domain_configuration(&self, name: &str) -> Result<()> {
        self.call("DeleteDomainConfiguration", || {
            self.iot
                .delete_domain_configuration()
                .domain_configuration_name(name)
                .send()
        })
        .await?;
        Ok(())
    }
}

/// A request that could not be built (a missing required field: a bug, not an AWS answer).
fn build_err(operation: &'static str, e: impl std::fmt::Display) -> CloudError {
    CloudError::Transport {
        operation,
        message: format!("cannot build the request: {e}"),
    }
}

/// TTL of the CNAMEs provision writes (seconds).
const CNAME_TTL: i64 = 300;

fn cname_change(
    action: aws_sdk_route53::types::ChangeAction,
    name: &str,
    value: &str,
    ttl: i64,
) -> Result<aws_sdk_route53::types::ChangeBatch> {
    use aws_sdk_route53::types::{Change, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
    const OP: &str = "route53:ChangeResourceRecordSets";
    let set = ResourceRecordSet::builder()
        .name(format!("{}.", dns_name(name)))
        .r#type(RrType::Cname)
        .ttl(ttl)
        .resource_records(
            ResourceRecord::builder()
                .value(format!("{}.", dns_name(value)))
                .build()
                .map_err(|e| build_err(OP, e))?,
        )
        .build()
        .map_err(|e| build_err(OP, e))?;
    ChangeBatch::builder()
        .comment("provision: custom MQTT domain")
        .changes(
            Change::builder()
                .action(action)
                .resource_record_set(set)
                .build()
                .map_err(|e| build_err(OP, e))?,
        )
        .build()
        .map_err(|e| build_err(OP, e))
}

fn zone_id(raw: &str) -> String {
    raw.trim_start_matches("/hostedzone/").to_string()
}

impl AwsCloud {
    async fn change_cname(
        &self,
        zone_id: &str,
        batch: aws_sdk_route53::types::ChangeBatch,
    ) -> Result<()> {
        self.call("route53:ChangeResourceRecordSets", || {
            self.route53
                .change_resource_record_sets()
                .hosted_zone_id(zone_id)
                .change_batch(batch.clone())
                .send()
        })
        .await?;
        Ok(())
    }
}

fn to_btree(attrs: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    attrs
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}
