//! One MQTT 5 connection for `verify`: TCP and TLS opened here, MQTT spoken by rumqttc, and every acknowledgement's reason code handed back to the caller.
//!
//! rumqttc connects to the broker's host name for both TCP and TLS, which rules out `--resolve`
//! (connect to an address, keep SNI and certificate checks for the host name) and hides which
//! phase failed. So the TCP connection and the TLS handshake happen here, with their own
//! timeouts, and rumqttc speaks MQTT over a private Unix socket bridged to the TLS stream.
//! rumqttc only logs refused PUBACK / SUBACK reason codes; the driver task below reads them
//! from the event stream and resolves the caller's pending acknowledgement.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::tokio_rustls::{client::TlsStream, TlsConnector};
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, Transport};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::{TcpStream, UnixListener};
use tokio::sync::{broadcast, oneshot};

use super::codes;

/// Where to connect: the host name (SNI, certificate check), the port, and optionally the
/// address to use instead of resolving the host (`--resolve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub address: Option<String>,
}

impl Target {
    pub fn describe(&self) -> String {
        match &self.address {
            Some(a) => format!("{}:{} (at {a})", self.host, self.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// Why a connection attempt failed, by phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {host}: {message}")]
    Dns { host: String, message: String },
    #[error("nothing accepts connections at {addr}: {message}")]
    Tcp { addr: String, message: String },
    #[error("no TCP connection to {addr} within {secs}s")]
    TcpTimeout { addr: String, secs: String },
    /// The server's certificate was not accepted by us.
    #[error("the server's certificate was not accepted: {message}")]
    ServerCertificate { message: String },
    /// The server ended the handshake (typically: it did not accept our certificate).
    #[error("the TLS handshake failed: {message}")]
    Tls { message: String },
    #[error("no TLS handshake within {secs}s (is this an MQTT over TLS port?)")]
    TlsTimeout { secs: String },
    /// CONNACK with a failure reason code.
    #[error("the broker refused the connection: CONNACK {code} ({})", codes::name(*code))]
    Refused { code: u8 },
    /// The broker closed the connection during CONNECT (AWS does so for MQTT 3 clients, and
    /// TLS 1.3 servers report a rejected client certificate only after the handshake).
    #[error("the broker closed the connection before CONNACK{}", tls.as_ref().map(|t| format!(": {t}")).unwrap_or_default())]
    Closed { tls: Option<String> },
    #[error("no CONNACK within {secs}s")]
    ConnackTimeout { secs: String },
}

impl ConnectError {
    /// Failures that say the endpoint is unreachable or not the broker, whoever connects.
    pub fn is_endpoint_failure(&self) -> bool {
        matches!(
            self,
            ConnectError::Dns { .. }
                | ConnectError::Tcp { .. }
                | ConnectError::TcpTimeout { .. }
                | ConnectError::ServerCertificate { .. }
                | ConnectError::TlsTimeout { .. }
                | ConnectError::ConnackTimeout { .. }
        )
    }

    /// The MQTT reason code, when the broker answered with one.
    pub fn reason_code(&self) -> Option<u8> {
        match self {
            ConnectError::Refused { code } => Some(*code),
            _ => None,
        }
    }
}

/// The answer to a QoS 1 PUBLISH or a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// The reason code (success codes are < 0x80).
    Code(u8),
    /// The connection ended before the acknowledgement.
    Closed(String),
    Timeout,
}

/// A message received on the connection.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Default)]
struct Pending {
    /// Waiters in request order, until the event loop assigns their packet id.
    publish_queue: VecDeque<oneshot::Sender<Ack>>,
    subscribe_queue: VecDeque<oneshot::Sender<Ack>>,
    publish_by_pkid: HashMap<u16, oneshot::Sender<Ack>>,
    subscribe_by_pkid: HashMap<u16, oneshot::Sender<Ack>>,
    closed: Option<String>,
}

impl Pending {
    fn close(&mut self, why: &str) {
        self.closed = Some(why.to_string());
        let all = self
            .publish_queue
            .drain(..)
            .chain(self.subscribe_queue.drain(..))
            .chain(self.publish_by_pkid.drain().map(|(_, w)| w))
            .chain(self.subscribe_by_pkid.drain().map(|(_, w)| w))
            .collect::<Vec<_>>();
        for w in all {
            let _ = w.send(Ack::Closed(why.to_string()));
        }
    }
}

/// A connected MQTT 5 session.
pub struct Session {
    client: AsyncClient,
    pending: Arc<Mutex<Pending>>,
    /// Serializes "queue the waiter, send the request" so waiters stay in request order.
    order: tokio::sync::Mutex<()>,
    messages: broadcast::Sender<Message>,
    driver: tokio::task::JoinHandle<()>,
    bridge: tokio::task::JoinHandle<()>,
}

static SOCKET_SEQ: AtomicU64 = AtomicU64::new(0);

/// A private directory for the bridge sockets, removed on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "provision-verify-{}-{}",
            std::process::id(),
            SOCKET_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self(dir))
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Seconds for messages: "10", "0.5".
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

async fn resolve(target: &Target) -> Result<Vec<SocketAddr>, ConnectError> {
    let host = target.address.as_deref().unwrap_or(&target.host);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, target.port))
        .await
        .map_err(|e| ConnectError::Dns {
            host: host.to_string(),
            message: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ConnectError::Dns {
            host: host.to_string(),
            message: "no address".into(),
        });
    }
    Ok(addrs)
}

/// TCP, then TLS with SNI = the target's host name, each within `timeout`.
pub async fn open_tls(
    target: &Target,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let addrs = resolve(target).await?;
    let shown = match &target.address {
        Some(_) => format!("{} (for {})", addrs[0], target.host),
        None => format!("{}:{} ({})", target.host, target.port, addrs[0].ip()),
    };
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(&addrs[..])).await {
        Err(_) => {
            return Err(ConnectError::TcpTimeout {
                addr: shown,
                secs: seconds(timeout),
            })
        }
        Ok(Err(e)) => {
            return Err(ConnectError::Tcp {
                addr: shown,
                message: e.to_string(),
            })
        }
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(target.host.clone()).map_err(|e| ConnectError::Dns {
        host: target.host.clone(),
        message: format!("not a valid TLS server name: {e}"),
    })?;
    match tokio::time::timeout(timeout, TlsConnector::from(config).connect(name, tcp)).await {
        Err(_) => Err(ConnectError::TlsTimeout {
            secs: seconds(timeout),
        }),
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(classify_tls(&e)),
    }
}

fn classify_tls(e: &std::io::Error) -> ConnectError {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => ConnectError::ServerCertificate {
            message: format!("{c:?}"),
        },
        Some(other) => ConnectError::Tls {
            message: other.to_string(),
        },
        None => ConnectError::Tls {
            message: e.to_string(),
        },
    }
}

/// Connect over MQTT 5 with this client id; Ok once the broker's CONNACK accepts.
pub async fn connect(
    target: &Target,
    config: Arc<ClientConfig>,
    client_id: &str,
    timeout: Duration,
) -> Result<Session, ConnectError> {
    let tls = open_tls(target, config, timeout).await?;

    // The bridge: rumqttc speaks plain MQTT to a private Unix socket; bytes go through TLS.
    let dir = SocketDir::new().map_err(|e| ConnectError::Tls {
        message: format!("cannot create a local socket directory: {e}"),
    })?;
    let path = dir.0.join("mqtt.sock");
    let listener = UnixListener::bind(&path).map_err(|e| ConnectError::Tls {
        message: format!("cannot listen on {}: {e}", path.display()),
    })?;
    let tls_error: Arc<Mutex<Option<String>>> = Arc::default();
    let tls_error_w = tls_error.clone();
    let bridge = tokio::spawn(async move {
        let _dir = dir;
        let Ok((mut local, _)) = listener.accept().await else {
            return;
        };
        let mut tls = tls;
        if let Err(e) = tokio::io::copy_bidirectional(&mut local, &mut tls).await {
            *tls_error_w.lock().expect("bridge lock") = Some(match classify_tls(&e) {
                ConnectError::Tls { message } => message,
                other => other.to_string(),
            });
        }
    });

    let mut options = MqttOptions::new(client_id, path.to_string_lossy(), 0);
    options
        .set_transport(Transport::Unix)
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_start(true)
        .set_connection_timeout(timeout.as_secs().max(1));
    let (client, mut eventloop) = AsyncClient::new(options, 64);

    let first = tokio::time::timeout(timeout, eventloop.poll()).await;
    let refused = match first {
        Err(_) => Some(ConnectError::ConnackTimeout {
            secs: seconds(timeout),
        }),
        Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) if ack.code == ConnectReturnCode::Success => {
            None
        }
        Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => Some(ConnectError::Refused {
            code: codes::connack(&ack.code),
        }),
        Ok(Err(ConnectionError::ConnectionRefused(code))) => Some(ConnectError::Refused {
            code: codes::connack(&code),
        }),
        Ok(Err(ConnectionError::Timeout(_))) => Some(ConnectError::ConnackTimeout {
            secs: seconds(timeout),
        }),
        Ok(other) => {
            // Give the bridge a moment to record why TLS ended.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let tls = tls_error.lock().expect("bridge lock").clone();
            tracing::debug!("CONNECT as {client_id} ended: {other:?}");
            Some(ConnectError::Closed { tls })
        }
    };
    if let Some(e) = refused {
        bridge.abort();
        return Err(e);
    }

    let pending: Arc<Mutex<Pending>> = Arc::default();
    let (messages, _) = broadcast::channel(1024);
    let driver = tokio::spawn(drive(eventloop, pending.clone(), messages.clone()));
    Ok(Session {
        client,
        pending,
        order: tokio::sync::Mutex::new(()),
        messages,
        driver,
        bridge,
    })
}

/// Run the event loop: match acknowledgements to waiters, fan messages out.
async fn drive(
    mut eventloop: EventLoop,
    pending: Arc<Mutex<Pending>>,
    messages: broadcast::Sender<Message>,
) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut p = pending.lock().expect("pending lock");
                if let Some(w) = p.publish_queue.pop_front() {
                    p.publish_by_pkid.insert(pkid, w);
                }
            }
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                let mut p = pending.lock().expect("pending lock");
                if let Some(w) = p.subscribe_queue.pop_front() {
                    p.subscribe_by_pkid.insert(pkid, w);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let w = pending
                    .lock()
                    .expect("pending lock")
                    .publish_by_pkid
                    .remove(&ack.pkid);
                if let Some(w) = w {
                    let _ = w.send(Ack::Code(codes::puback(&ack.reason)));
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let w = pending
                    .lock()
                    .expect("pending lock")
                    .subscribe_by_pkid
                    .remove(&ack.pkid);
                if let Some(w) = w {
                    let code = ack.return_codes.first().map(codes::suback).unwrap_or(0x80);
                    let _ = w.send(Ack::Code(code));
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = messages.send(Message {
                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                    payload: p.payload.to_vec(),
                });
            }
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                pending.lock().expect("pending lock").close(&format!(
                    "the broker sent DISCONNECT {} ({})",
                    codes::disconnect(&d.reason_code),
                    codes::name(codes::disconnect(&d.reason_code))
                ));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                pending
                    .lock()
                    .expect("pending lock")
                    .close(&format!("the connection ended: {e}"));
                return;
            }
        }
    }
}

impl Session {
    /// Receive every message that arrives from now on.
    pub fn listen(&self) -> broadcast::Receiver<Message> {
        self.messages.subscribe()
    }

    /// Why the connection ended, if it has.
    pub fn closed(&self) -> Option<String> {
        self.pending.lock().expect("pending lock").closed.clone()
    }

    /// PUBLISH at QoS 1 and wait for the PUBACK's reason code.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, timeout: Duration) -> Ack {
        let (tx, rx) = oneshot::channel();
        {
            let _order = self.order.lock().await;
            {
                let mut p = self.pending.lock().expect("pending lock");
                if let Some(why) = &p.closed {
                    return Ack::Closed(why.clone());
                }
                p.publish_queue.push_back(tx);
            }
            if let Err(e) = self
                .client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
            {
                return Ack::Closed(format!("cannot send PUBLISH: {e}"));
            }
        }
        wait(rx, timeout).await
    }

    /// SUBSCRIBE at QoS 1 and wait for the SUBACK's reason code.
    pub async fn subscribe(&self, filter: &str, timeout: Duration) -> Ack {
        let (tx, rx) = oneshot::channel();
        {
            let _order = self.order.lock().await;
            {
                let mut p = self.pending.lock().expect("pending lock");
                if let Some(why) = &p.closed {
                    return Ack::Closed(why.clone());
                }
                p.subscribe_queue.push_back(tx);
            }
            if let Err(e) = self.client.subscribe(filter, QoS::AtLeastOnce).await {
                return Ack::Closed(format!("cannot send SUBSCRIBE: {e}"));
            }
        }
        wait(rx, timeout).await
    }

    /// DISCONNECT politely, then stop (within a second).
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        for _ in 0..50 {
            if self.closed().is_some() || self.driver.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
        self.bridge.abort();
    }
}

async fn wait(rx: oneshot::Receiver<Ack>, timeout: Duration) -> Ack {
    match tokio::time::timeout(timeout, rx).await {
        Err(_) => Ack::Timeout,
        Ok(Err(_)) => Ack::Closed("the session ended".into()),
        Ok(Ok(a)) => a,
    }
}

/// Wait until a message with this topic and payload arrives; false after `within`.
pub async fn received(
    rx: &mut broadcast::Receiver<Message>,
    topic: &str,
    payload: &[u8],
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return false,
            Ok(Ok(m)) if m.topic == topic && m.payload == payload => return true,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => return false,
        }
    }
}
