//! The verify report as text (a table per station) and the likely cause of each kind of failure, in one line.

use std::fmt::Write as _;
use std::time::Duration;

use super::session::{Ack, ConnectError};
use super::tls::TlsSetupError;
use super::{codes, Probe, ProbeResult, Report, Status};

/// Why a station's TLS identity could not be loaded, as advice.
pub fn files_cause(e: &TlsSetupError) -> String {
    match e {
        TlsSetupError::Missing { path } if path.ends_with(crate::certstore::PRIVATE_KEY_FILE) => {
            "the private key was lost or moved: provision saves it only once, when it creates the certificate (`provision plan` reports this; `apply --replace-missing-keys` issues a new certificate)".into()
        }
        TlsSetupError::Missing { .. } => {
            "the station has not been applied yet, or certificates.dir points elsewhere: run `provision apply`".into()
        }
        TlsSetupError::KeyMismatch { .. } => {
            "the key file was replaced or mixed up with another station's: restore the station's own key".into()
        }
        TlsSetupError::NoCertificate { .. } | TlsSetupError::NoKey { .. } | TlsSetupError::Read { .. } => {
            "the file is damaged or not PEM: restore it from the station's directory".into()
        }
        TlsSetupError::Unusable { .. } => "the key type is not supported for TLS client authentication".into(),
        TlsSetupError::BadCa { .. } => "the CA file is not a usable trust anchor".into(),
    }
}

/// The likely cause of a failed connection, in one line.
pub fn connect_cause(e: &ConnectError, id: &str) -> String {
    match e {
        ConnectError::Dns { .. } => "the endpoint name does not resolve (DNS not propagated yet? connect anyway with --resolve HOST:PORT:ADDRESS)".into(),
        ConnectError::Tcp { .. } => "no broker listens there: wrong endpoint, address or port (8883, or 443 with ALPN), or the broker is down".into(),
        ConnectError::TcpTimeout { .. } => "packets are dropped on the way: a firewall, or a wrong address".into(),
        ConnectError::ServerCertificate { .. } => "the server is not the endpoint expected, or the trust anchor is wrong (AWS ATS endpoints chain to Amazon Root CA 1; a test broker needs --ca-file)".into(),
        ConnectError::Tls { .. } | ConnectError::Closed { tls: Some(_) } => format!(
            "the broker rejected {id}'s client certificate: it is not signed by a CA the account trusts, or not registered in this account and region"
        ),
        ConnectError::TlsTimeout { .. } => "the server does not answer TLS on this port".into(),
        ConnectError::Refused { code: codes::NOT_AUTHORIZED } => format!(
            "certificate not ACTIVE, or not attached to a policy that allows iot:Connect on client/{id}"
        ),
        ConnectError::Refused { code: 0x85 } => format!("the broker does not accept the client id {id}"),
        ConnectError::Refused { code } => format!("the broker refused the connection: {}", codes::name(*code)),
        ConnectError::Closed { tls: None } => format!(
            "not authorized: certificate not ACTIVE, or not attached to a policy that allows iot:Connect on client/{id}"
        ),
        ConnectError::ConnackTimeout { .. } => "the broker accepted TLS but did not answer CONNECT in time (overloaded, or not an MQTT broker)".into(),
    }
}

/// A PUBLISH or SUBSCRIBE that should have succeeded and did not.
pub fn ack_failure(
    probe: Probe,
    ack: &Ack,
    who: &str,
    what: &str,
    topic: &str,
    timeout: Duration,
    not_authorized: impl FnOnce() -> String,
) -> ProbeResult {
    let packet = if what.starts_with("subscribe") {
        "SUBACK"
    } else {
        "PUBACK"
    };
    match ack {
        Ack::Code(c) => ProbeResult::fail(
            probe,
            Some(*c),
            format!(
                "{who} could not {what} {topic}: {packet} {c} ({})",
                codes::name(*c)
            ),
            if *c == codes::NOT_AUTHORIZED {
                not_authorized()
            } else {
                format!("the broker refused: {}", codes::name(*c))
            },
        ),
        Ack::Closed(why) => ProbeResult::fail(
            probe,
            None,
            format!("{who} could not {what} {topic}: {why}"),
            format!("the broker ended the connection (AWS IoT disconnects a client for a denied action on MQTT 3); {}", not_authorized()),
        ),
        Ack::Timeout => ProbeResult::fail(
            probe,
            None,
            format!(
                "{who} got no {packet} for {what} {topic} within {}s",
                super::session::seconds(timeout)
            ),
            "the broker is slow or overloaded, or the connection stalled".into(),
        ),
    }
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Fail => "FAIL",
        Status::Skipped => "skip",
    }
}

/// The report as text: the endpoint, the platform, then a table per station and a summary.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let e = &r.endpoint;
    let _ = write!(out, "Endpoint {}:{}", e.host, e.port);
    if let Some(a) = &e.address {
        let _ = write!(out, " at {a}");
    }
    let _ = write!(out, " ({}", e.source);
    if let Some(alpn) = &e.alpn {
        let _ = write!(out, ", ALPN {alpn}");
    }
    let _ = writeln!(out, ")");
    let p = &r.platform;
    let subs: Vec<String> = p
        .subscriptions
        .iter()
        .map(|s| match s.reason_code {
            Some(c) => format!("{} (SUBACK {c})", s.filter),
            None => format!("{} (no SUBACK)", s.filter),
        })
        .collect();
    match (&p.problem, p.connected) {
        (None, _) => {
            let _ = writeln!(
                out,
                "Platform {}: connected, subscribed to {}",
                p.id,
                subs.join(", ")
            );
        }
        (Some(problem), _) => {
            let _ = writeln!(out, "Platform {}: FAIL: {problem}", p.id);
        }
    }
    for s in &r.stations {
        let _ = writeln!(
            out,
            "\nstation {}: {}",
            s.id,
            if s.ok { "ok" } else { "FAIL" }
        );
        let _ = writeln!(
            out,
            "  {:<20} {:<6} {:>4}  detail",
            "probe", "result", "code"
        );
        for p in &s.probes {
            let code = p.reason_code.map(|c| c.to_string()).unwrap_or("-".into());
            let _ = writeln!(
                out,
                "  {:<20} {:<6} {:>4}  {}",
                p.probe.label(),
                status(p.status),
                code,
                p.detail
            );
            if let Some(cause) = &p.cause {
                let _ = writeln!(
                    out,
                    "  {:<20} {:<6} {:>4}  likely cause: {cause}",
                    "", "", ""
                );
            }
        }
    }
    let sm = &r.summary;
    let _ = writeln!(
        out,
        "\n{} of {} station(s) passed every probe{}.",
        sm.passed,
        sm.stations,
        if r.platform.ok {
            ""
        } else {
            "; the platform failed its part"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    #[test]
    fn text_report_is_a_table_per_station_with_causes() {
        let report = Report {
            format_version: FORMAT_VERSION,
            fleet: "solar-sandbox".into(),
            endpoint: EndpointReport {
                host: "abc-ats.iot.cn-northwest-1.amazonaws.com.cn".into(),
                port: 443,
                address: Some("10.0.0.5".into()),
                source: "DescribeEndpoint iot:Data-ATS".into(),
                alpn: Some("x-amzn-mqtt-ca".into()),
            },
            platform: PlatformReport {
                id: "stmain".into(),
                connected: true,
                ok: true,
                subscriptions: vec![SubscriptionResult {
                    filter: "device/station/up/+".into(),
                    reason_code: Some(1),
                    ok: true,
                }],
                problem: None,
            },
            stations: vec![StationReport {
                id: "st000".into(),
                ok: false,
                probes: vec![
                    ProbeResult::fail(
                        Probe::Connect,
                        Some(135),
                        "cannot connect as st000: the broker refused the connection: CONNACK 135 (Not authorized)".into(),
                        connect_cause(&ConnectError::Refused { code: 135 }, "st000"),
                    ),
                    ProbeResult::skipped(Probe::Uplink, "not run: st000 could not connect".into()),
                ],
            }],
            summary: Summary {
                stations: 1,
                passed: 0,
                failed: 1,
            },
        };
        insta::assert_snapshot!(render_text(&report));
    }
}
