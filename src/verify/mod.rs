//! `verify`: connect as each station over MQTT 5 with mutual TLS and prove the round trip (uplink to the platform, downlink from it) and the confinement (another station's topics and client id are refused or never delivered).
//!
//! The platform identity connects once per run and subscribes to the uplinks; each station then
//! runs its probes on its own connection, several stations at a time. Every probe has a timeout;
//! "never delivered" is judged after a settle window. [`session`] holds the MQTT and TLS
//! mechanics, [`report`] the text and JSON output.

pub mod codes;
pub mod report;
pub mod session;
pub mod tls;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rustls::RootCertStore;
use serde::Serialize;

use session::{Ack, ConnectError, Session, Target};
use tls::IdentityFiles;

/// Version of the JSON report.
pub const FORMAT_VERSION: u32 = 1;

/// One identity as verify sees it.
#[derive(Debug, Clone)]
pub struct Station {
    pub id: String,
    pub dir: PathBuf,
    pub up: String,
    pub down: String,
}

/// What to verify and how.
#[derive(Debug, Clone)]
pub struct Spec {
    pub fleet: String,
    pub target: Target,
    /// How the endpoint host was chosen (for the report).
    pub endpoint_source: String,
    pub roots: RootCertStore,
    /// Offer ALPN `x-amzn-mqtt-ca` (port 443).
    pub alpn: bool,
    pub platform: Station,
    /// Every station of the fleet, in file order (peers for the confinement probes).
    pub stations: Vec<Station>,
    /// Ids to verify, a subset of `stations`.
    pub selected: Vec<String>,
    pub timeout: Duration,
    /// How long a forbidden message is watched for before "never delivered" is concluded.
    pub settle: Duration,
    pub parallelism: usize,
}

/// Failures that stop the whole run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "cannot reach the MQTT endpoint {target}, so nothing was verified (likely cause: {hint})"
    )]
    Unreachable {
        target: String,
        hint: String,
        #[source]
        source: ConnectError,
    },
}

/// The probes, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    Connect,
    Uplink,
    Downlink,
    PublishToOtherUplink,
    SubscribeToOtherDownlink,
    ConnectAsOtherClient,
}

impl Probe {
    pub fn label(self) -> &'static str {
        match self {
            Probe::Connect => "connect",
            Probe::Uplink => "uplink",
            Probe::Downlink => "downlink",
            Probe::PublishToOtherUplink => "confined: publish",
            Probe::SubscribeToOtherDownlink => "confined: subscribe",
            Probe::ConnectAsOtherClient => "confined: client id",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Fail,
    /// Not run because an earlier probe failed, or nothing to run it against.
    Skipped,
}

/// One probe's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub probe: Probe,
    pub status: Status,
    /// The MQTT reason code that decided it (CONNACK, PUBACK or SUBACK), when there was one.
    pub reason_code: Option<u8>,
    /// What happened.
    pub detail: String,
    /// For failures: the likely cause, in one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl ProbeResult {
    fn ok(probe: Probe, code: Option<u8>, detail: String) -> Self {
        Self {
            probe,
            status: Status::Ok,
            reason_code: code,
            detail,
            cause: None,
        }
    }
    fn fail(probe: Probe, code: Option<u8>, detail: String, cause: String) -> Self {
        Self {
            probe,
            status: Status::Fail,
            reason_code: code,
            detail,
            cause: Some(cause),
        }
    }
    fn skipped(probe: Probe, detail: String) -> Self {
        Self {
            probe,
            status: Status::Skipped,
            reason_code: None,
            detail,
            cause: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StationReport {
    pub id: String,
    pub ok: bool,
    pub probes: Vec<ProbeResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    pub host: String,
    pub port: u16,
    /// The address connected to instead of resolving the host (`--resolve`).
    pub address: Option<String>,
    pub source: String,
    pub alpn: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionResult {
    pub filter: String,
    pub reason_code: Option<u8>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlatformReport {
    pub id: String,
    pub connected: bool,
    pub ok: bool,
    pub subscriptions: Vec<SubscriptionResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub stations: usize,
    pub passed: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format_version: u32,
    pub fleet: String,
    pub endpoint: EndpointReport,
    pub platform: PlatformReport,
    pub stations: Vec<StationReport>,
    pub summary: Summary,
}

impl Report {
    /// Every probe of every station passed, and the platform could do its part.
    pub fn passed(&self) -> bool {
        self.platform.ok && self.stations.iter().all(|s| s.ok)
    }
}

static NONCE: AtomicU64 = AtomicU64::new(0);

/// A payload no other run or probe sends.
fn nonce(id: &str, probe: &str) -> Vec<u8> {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "provision verify {id} {probe} {}-{t}-{}",
        std::process::id(),
        NONCE.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes()
}

/// The subscription filter for a station's uplink that a platform policy is likely to allow:
/// the level holding the station id replaced by `+` (`device/station/up/+`), else the topic.
pub fn uplink_filter(up: &str, id: &str) -> String {
    let levels: Vec<&str> = up.split('/').collect();
    if levels.contains(&id) {
        levels
            .iter()
            .map(|l| if *l == id { "+" } else { l })
            .collect::<Vec<_>>()
            .join("/")
    } else {
        up.to_string()
    }
}

struct Shared {
    spec: Spec,
    platform: Option<Session>,
    platform_problem: Option<String>,
}

/// Run every probe for the selected stations.
pub async fn run(spec: Spec) -> Result<Report, VerifyError> {
    let endpoint = EndpointReport {
        host: spec.target.host.clone(),
        port: spec.target.port,
        address: spec.target.address.clone(),
        source: spec.endpoint_source.clone(),
        alpn: spec
            .alpn
            .then(|| String::from_utf8_lossy(tls::ALPN_MQTT_CA).into_owned()),
    };
    let (platform, mut platform_report) = connect_platform(&spec).await?;
    let platform_problem = platform_report.problem.clone();
    let shared = Arc::new(Shared {
        spec,
        platform,
        platform_problem,
    });

    // Phase 1: each station's own connection: round trip, topic confinement.
    let ids = shared.spec.selected.clone();
    let phase1: Vec<(StationReport, Option<Arc<rustls::ClientConfig>>)> =
        futures::stream::iter(ids.into_iter().map(|id| {
            let shared = shared.clone();
            async move { verify_station(&shared, &id).await }
        }))
        .buffer_unordered(shared.spec.parallelism.max(1))
        .collect()
        .await;
    // Phase 2, once every station has disconnected: connecting with another station's client
    // id. Were it wrongly accepted, the broker would drop that station's own connection
    // (newest wins), so it must not overlap with phase 1.
    let mut reports: Vec<StationReport> =
        futures::stream::iter(phase1.into_iter().map(|(mut r, config)| {
            let shared = shared.clone();
            async move {
                let spec = &shared.spec;
                let me = spec
                    .stations
                    .iter()
                    .find(|s| s.id == r.id)
                    .expect("fleet station");
                r.probes.push(match (config, peer(spec, &r.id)) {
                    (Some(config), Some(peer)) => connect_as_other(spec, config, me, peer).await,
                    (None, Some(_)) => ProbeResult::skipped(
                        Probe::ConnectAsOtherClient,
                        format!("not run: {}'s TLS identity cannot be loaded", r.id),
                    ),
                    (_, None) => ProbeResult::skipped(
                        Probe::ConnectAsOtherClient,
                        "no other station in the fleet to test confinement against".into(),
                    ),
                });
                r.ok = r.probes.iter().all(|p| p.status != Status::Fail)
                    && r.probes[0].status == Status::Ok;
                r
            }
        }))
        .buffer_unordered(shared.spec.parallelism.max(1))
        .collect()
        .await;
    let order: Vec<&str> = shared.spec.selected.iter().map(String::as_str).collect();
    reports.sort_by_key(|r| order.iter().position(|id| *id == r.id));

    let shared = Arc::into_inner(shared).expect("every station task has finished");
    if let Some(p) = shared.platform {
        if let Some(why) = p.closed() {
            platform_report.ok = false;
            platform_report.problem = Some(format!("the platform's connection ended: {why}"));
        }
        p.disconnect().await;
    }
    let passed = reports.iter().filter(|r| r.ok).count();
    Ok(Report {
        format_version: FORMAT_VERSION,
        fleet: shared.spec.fleet,
        endpoint,
        platform: platform_report,
        summary: Summary {
            stations: reports.len(),
            passed,
            failed: reports.len() - passed,
        },
        stations: reports,
    })
}

async fn connect_platform(spec: &Spec) -> Result<(Option<Session>, PlatformReport), VerifyError> {
    let id = spec.platform.id.clone();
    let mut report = PlatformReport {
        id: id.clone(),
        connected: false,
        ok: false,
        subscriptions: Vec::new(),
        problem: None,
    };
    let config = match tls::client_config(
        &spec.roots,
        &IdentityFiles::in_dir(&spec.platform.dir),
        spec.alpn,
    ) {
        Ok(c) => c,
        Err(e) => {
            report.problem = Some(format!(
                "the platform {id} cannot connect: {e}; {}",
                report::files_cause(&e)
            ));
            return Ok((None, report));
        }
    };
    let session = match session::connect(&spec.target, config, &id, spec.timeout).await {
        Ok(s) => s,
        Err(e) if e.is_endpoint_failure() => {
            return Err(VerifyError::Unreachable {
                target: spec.target.describe(),
                hint: report::connect_cause(&e, &id),
                source: e,
            })
        }
        Err(e) => {
            report.problem = Some(format!(
                "the platform {id} cannot connect: {e}; likely cause: {}",
                report::connect_cause(&e, &id)
            ));
            return Ok((None, report));
        }
    };
    report.connected = true;

    // Subscribe to the uplinks: the generalized filters first, exact topics where refused.
    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
    for s in &spec.stations {
        let f = uplink_filter(&s.up, &s.id);
        match filters.iter_mut().find(|(g, _)| *g == f) {
            Some((_, topics)) => topics.push(s.up.clone()),
            None => filters.push((f, vec![s.up.clone()])),
        }
    }
    let mut all_ok = true;
    for (filter, topics) in filters {
        let ack = session.subscribe(&filter, spec.timeout).await;
        let granted = matches!(ack, Ack::Code(c) if codes::is_success(c));
        if granted || topics.len() == 1 && topics[0] == filter {
            all_ok &= granted;
            report.subscriptions.push(subscription(filter, &ack));
            continue;
        }
        report.subscriptions.push(subscription(filter, &ack));
        for t in topics {
            let ack = session.subscribe(&t, spec.timeout).await;
            all_ok &= matches!(ack, Ack::Code(c) if codes::is_success(c));
            report.subscriptions.push(subscription(t, &ack));
        }
    }
    if !all_ok {
        let refused: Vec<&str> = report
            .subscriptions
            .iter()
            .filter(|s| !s.ok)
            .map(|s| s.filter.as_str())
            .collect();
        // A refused generalized filter that was replaced by granted exact topics is fine.
        let exact_ok = spec.stations.iter().all(|s| {
            report
                .subscriptions
                .iter()
                .any(|r| r.ok && (r.filter == s.up || r.filter == uplink_filter(&s.up, &s.id)))
        });
        if !exact_ok {
            report.problem = Some(format!(
                "the platform {id} could not subscribe to {}: its policy must allow iot:Subscribe on these topicfilter resources",
                refused.join(", ")
            ));
        }
    }
    report.ok = report.problem.is_none();
    Ok((Some(session), report))
}

fn subscription(filter: String, ack: &Ack) -> SubscriptionResult {
    let (code, ok) = match ack {
        Ack::Code(c) => (Some(*c), codes::is_success(*c)),
        _ => (None, false),
    };
    SubscriptionResult {
        filter,
        reason_code: code,
        ok,
    }
}

/// The next station in the fleet, to test confinement against.
fn peer<'a>(spec: &'a Spec, id: &str) -> Option<&'a Station> {
    let i = spec.stations.iter().position(|s| s.id == id)?;
    let n = spec.stations.len();
    (n > 1).then(|| &spec.stations[(i + 1) % n])
}

async fn verify_station(
    shared: &Shared,
    id: &str,
) -> (StationReport, Option<Arc<rustls::ClientConfig>>) {
    let spec = &shared.spec;
    let me = spec
        .stations
        .iter()
        .find(|s| s.id == id)
        .expect("selected ids are fleet stations")
        .clone();
    let peer = peer(spec, id).cloned();
    let mut probes = Vec::new();

    let config = tls::client_config(&spec.roots, &IdentityFiles::in_dir(&me.dir), spec.alpn);
    let session = match &config {
        Err(e) => {
            probes.push(ProbeResult::fail(
                Probe::Connect,
                None,
                format!("cannot load {id}'s TLS identity: {e}"),
                report::files_cause(e),
            ));
            None
        }
        Ok(config) => {
            match session::connect(&spec.target, config.clone(), id, spec.timeout).await {
                Ok(s) => {
                    probes.push(ProbeResult::ok(
                        Probe::Connect,
                        Some(0),
                        format!("connected as client id {id} with its certificate"),
                    ));
                    Some(s)
                }
                Err(e) => {
                    probes.push(ProbeResult::fail(
                        Probe::Connect,
                        e.reason_code(),
                        format!("cannot connect as {id}: {e}"),
                        report::connect_cause(&e, id),
                    ));
                    None
                }
            }
        }
    };

    match &session {
        None => {
            let why = format!("not run: {id} could not connect");
            for p in [
                Probe::Uplink,
                Probe::Downlink,
                Probe::PublishToOtherUplink,
                Probe::SubscribeToOtherDownlink,
            ] {
                probes.push(ProbeResult::skipped(p, why.clone()));
            }
        }
        Some(s) => {
            probes.push(uplink(shared, s, &me).await);
            probes.push(downlink(shared, s, &me).await);
            match &peer {
                Some(peer) => {
                    probes.push(publish_to_other(shared, s, &me, peer).await);
                    probes.push(subscribe_to_other(shared, s, &me, peer).await);
                }
                None => {
                    for p in [Probe::PublishToOtherUplink, Probe::SubscribeToOtherDownlink] {
                        probes.push(ProbeResult::skipped(
                            p,
                            "no other station in the fleet to test confinement against".into(),
                        ));
                    }
                }
            }
        }
    }
    if let Some(s) = session {
        s.disconnect().await;
    }
    let report = StationReport {
        id: id.to_string(),
        ok: false,
        probes,
    };
    (report, config.ok())
}

fn no_platform(shared: &Shared, probe: Probe) -> ProbeResult {
    let pid = &shared.spec.platform.id;
    ProbeResult::fail(
        probe,
        None,
        format!("not run: the platform {pid} is not connected"),
        shared
            .platform_problem
            .clone()
            .unwrap_or_else(|| format!("the platform {pid} could not connect")),
    )
}

/// A connection that ended mid-probe proves nothing: MQTT 5 brokers answer a denied action with
/// a reason code (AWS IoT and mosquitto: 135) and keep the connection.
fn closed_cause(id: &str) -> String {
    format!("the connection ended before the broker answered, so the probe is inconclusive: another client connected with client id {id} (the broker keeps only the newest), or the broker went away")
}

/// When an expected message did not arrive: was it the connection?
fn not_received(
    probe: Probe,
    code: Option<u8>,
    detail: String,
    closed: Option<String>,
    cause: String,
) -> ProbeResult {
    match closed {
        Some(why) => ProbeResult::fail(probe, code, format!("{detail}; {why}"), "the connection ended during the probe: another client connected with the same client id (the broker keeps only the newest), or the broker went away".into()),
        None => ProbeResult::fail(probe, code, detail, cause),
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", session::seconds(d))
}

async fn uplink(shared: &Shared, s: &Session, me: &Station) -> ProbeResult {
    let spec = &shared.spec;
    let Some(platform) = &shared.platform else {
        return no_platform(shared, Probe::Uplink);
    };
    let pid = &spec.platform.id;
    let payload = nonce(&me.id, "uplink");
    let mut rx = platform.listen();
    match s.publish(&me.up, payload.clone(), spec.timeout).await {
        Ack::Code(c) if codes::is_success(c) => {
            if session::received(&mut rx, &me.up, &payload, spec.timeout).await {
                ProbeResult::ok(
                    Probe::Uplink,
                    Some(c),
                    format!("published to {} (PUBACK {c}); {pid} received it", me.up),
                )
            } else {
                not_received(
                    Probe::Uplink,
                    Some(c),
                    format!(
                        "published to {} (PUBACK {c}), but {pid} did not receive it within {}",
                        me.up,
                        secs(spec.timeout)
                    ),
                    platform.closed(),
                    format!("the platform's policy does not allow iot:Receive on topic/{}, or its subscription does not cover the topic", me.up),
                )
            }
        }
        ack => report::ack_failure(
            Probe::Uplink,
            &ack,
            &me.id,
            "publish to",
            &me.up,
            spec.timeout,
            || {
                format!(
                "{}'s certificate is not attached to a policy that allows iot:Publish on topic/{}",
                me.id, me.up
            )
            },
        ),
    }
}

async fn downlink(shared: &Shared, s: &Session, me: &Station) -> ProbeResult {
    let spec = &shared.spec;
    let Some(platform) = &shared.platform else {
        return no_platform(shared, Probe::Downlink);
    };
    let pid = &spec.platform.id;
    match s.subscribe(&me.down, spec.timeout).await {
        Ack::Code(c) if codes::is_success(c) => {}
        ack => {
            return report::ack_failure(
                Probe::Downlink,
                &ack,
                &me.id,
                "subscribe to",
                &me.down,
                spec.timeout,
                || {
                    format!(
                    "{}'s certificate is not attached to a policy that allows iot:Subscribe on topicfilter/{}",
                    me.id, me.down
                )
                },
            )
        }
    }
    let payload = nonce(&me.id, "downlink");
    let mut rx = s.listen();
    match platform
        .publish(&me.down, payload.clone(), spec.timeout)
        .await
    {
        Ack::Code(c) if codes::is_success(c) => {
            if session::received(&mut rx, &me.down, &payload, spec.timeout).await {
                ProbeResult::ok(
                    Probe::Downlink,
                    Some(c),
                    format!(
                        "{pid} published to {} (PUBACK {c}); {} received it",
                        me.down, me.id
                    ),
                )
            } else {
                not_received(
                    Probe::Downlink,
                    Some(c),
                    format!(
                        "{pid} published to {} (PUBACK {c}), but {} did not receive it within {}",
                        me.down,
                        me.id,
                        secs(spec.timeout)
                    ),
                    s.closed(),
                    format!(
                        "{}'s policy does not allow iot:Receive on topic/{}",
                        me.id, me.down
                    ),
                )
            }
        }
        ack => report::ack_failure(
            Probe::Downlink,
            &ack,
            pid,
            "publish to",
            &me.down,
            spec.timeout,
            || {
                format!(
                    "the platform {pid}'s policy does not allow iot:Publish on topic/{}",
                    me.down
                )
            },
        ),
    }
}

async fn publish_to_other(
    shared: &Shared,
    s: &Session,
    me: &Station,
    peer: &Station,
) -> ProbeResult {
    let spec = &shared.spec;
    let probe = Probe::PublishToOtherUplink;
    let topic = &peer.up;
    let payload = nonce(&me.id, "publish-other");
    let mut rx = shared.platform.as_ref().map(Session::listen);
    let ack = s.publish(topic, payload.clone(), spec.timeout).await;
    let accepted = match ack {
        Ack::Code(c) if !codes::is_success(c) => {
            return ProbeResult::ok(
                probe,
                Some(c),
                format!(
                    "publish to {}'s uplink {topic} refused: PUBACK {c} ({})",
                    peer.id,
                    codes::name(c)
                ),
            )
        }
        Ack::Closed(why) => {
            return ProbeResult::fail(
                probe,
                None,
                format!("publish to {}'s uplink {topic}: no PUBACK, {why}", peer.id),
                closed_cause(&me.id),
            )
        }
        Ack::Code(c) => format!("accepted (PUBACK {c})"),
        Ack::Timeout => format!("not acknowledged within {}", secs(spec.timeout)),
    };
    let code = match ack {
        Ack::Code(c) => Some(c),
        _ => None,
    };
    let Some(rx) = rx.as_mut() else {
        return ProbeResult::fail(
            probe,
            code,
            format!("publish to {}'s uplink {topic} {accepted}; delivery cannot be checked without the platform", peer.id),
            format!("{}'s policy allows iot:Publish beyond its own uplink", me.id),
        );
    };
    if session::received(rx, topic, &payload, spec.settle).await {
        ProbeResult::fail(
            probe,
            code,
            format!(
                "published to {}'s uplink {topic} ({accepted}) and {} received it",
                peer.id, spec.platform.id
            ),
            format!(
                "{}'s policy allows iot:Publish beyond topic/{} (a wildcard in its Publish resource?)",
                me.id, me.up
            ),
        )
    } else {
        ProbeResult::ok(
            probe,
            code,
            format!(
                "publish to {}'s uplink {topic} {accepted} but never delivered within {}",
                peer.id,
                secs(spec.settle)
            ),
        )
    }
}

async fn subscribe_to_other(
    shared: &Shared,
    s: &Session,
    me: &Station,
    peer: &Station,
) -> ProbeResult {
    let spec = &shared.spec;
    let probe = Probe::SubscribeToOtherDownlink;
    let topic = &peer.down;
    let ack = s.subscribe(topic, spec.timeout).await;
    let code = match ack {
        Ack::Code(c) if !codes::is_success(c) => {
            return ProbeResult::ok(
                probe,
                Some(c),
                format!(
                    "subscription to {}'s downlink {topic} refused: SUBACK {c} ({})",
                    peer.id,
                    codes::name(c)
                ),
            )
        }
        Ack::Closed(why) => {
            return ProbeResult::fail(
                probe,
                None,
                format!(
                    "subscription to {}'s downlink {topic}: no SUBACK, {why}",
                    peer.id
                ),
                closed_cause(&me.id),
            )
        }
        Ack::Code(c) => Some(c),
        Ack::Timeout => None,
    };
    let granted = match code {
        Some(c) => format!("granted (SUBACK {c})"),
        None => format!("not acknowledged within {}", secs(spec.timeout)),
    };
    let Some(platform) = &shared.platform else {
        return ProbeResult::fail(
            probe,
            code,
            format!("subscription to {}'s downlink {topic} {granted}; delivery cannot be checked without the platform", peer.id),
            format!("{}'s policy allows iot:Subscribe beyond its own downlink", me.id),
        );
    };
    let payload = nonce(&me.id, "subscribe-other");
    let mut rx = s.listen();
    let sent = platform.publish(topic, payload.clone(), spec.timeout).await;
    if !matches!(sent, Ack::Code(c) if codes::is_success(c)) {
        return ProbeResult::fail(
            probe,
            code,
            format!("subscription to {}'s downlink {topic} {granted}; the platform could not publish there to check delivery", peer.id),
            format!("{}'s policy allows iot:Subscribe beyond topicfilter/{}", me.id, me.down),
        );
    }
    if session::received(&mut rx, topic, &payload, spec.settle).await {
        ProbeResult::fail(
            probe,
            code,
            format!(
                "subscribed to {}'s downlink {topic} ({granted}) and received its messages",
                peer.id
            ),
            format!(
                "{}'s policy allows iot:Subscribe and iot:Receive beyond its own downlink {} (a wildcard?)",
                me.id, me.down
            ),
        )
    } else {
        ProbeResult::ok(
            probe,
            code,
            format!(
                "subscription to {}'s downlink {topic} {granted} but nothing delivered within {}",
                peer.id,
                secs(spec.settle)
            ),
        )
    }
}

async fn connect_as_other(
    spec: &Spec,
    config: Arc<rustls::ClientConfig>,
    me: &Station,
    peer: &Station,
) -> ProbeResult {
    let probe = Probe::ConnectAsOtherClient;
    match session::connect(&spec.target, config, &peer.id, spec.timeout).await {
        Ok(s) => {
            s.disconnect().await;
            ProbeResult::fail(
                probe,
                Some(0),
                format!(
                    "{}'s certificate connected with {}'s client id",
                    me.id, peer.id
                ),
                format!(
                    "{}'s policy allows iot:Connect beyond client/{} (client/* or a variable without the thing check?)",
                    me.id, me.id
                ),
            )
        }
        Err(ConnectError::Refused { code }) => ProbeResult::ok(
            probe,
            Some(code),
            format!(
                "connecting as {} with {}'s certificate refused: CONNACK {code} ({})",
                peer.id,
                me.id,
                codes::name(code)
            ),
        ),
        Err(ConnectError::Closed { tls: None }) => ProbeResult::ok(
            probe,
            None,
            format!(
                "connecting as {} with {}'s certificate refused: the broker closed the connection",
                peer.id, me.id
            ),
        ),
        Err(e) => ProbeResult::fail(
            probe,
            None,
            format!("could not test connecting as {}: {e}", peer.id),
            report::connect_cause(&e, &me.id),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplink_filter_generalizes_the_station_level() {
        assert_eq!(
            uplink_filter("device/station/up/st000", "st000"),
            "device/station/up/+"
        );
        assert_eq!(uplink_filter("st000/up", "st000"), "+/up");
        assert_eq!(uplink_filter("up/st000-x", "st000"), "up/st000-x");
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce("st000", "uplink"), nonce("st000", "uplink"));
    }
}
