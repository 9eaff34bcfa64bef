//! Test harness: starts a private sandbox (patched moto) per test on a free port, runs the built
//! binary against it, and changes the account out of band to create drift.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const REGION: &str = "cn-northwest-1";

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sandbox venv's python, installed by `scripts/sandbox install` (which `.ci/run` runs).
fn sandbox_python() -> PathBuf {
    if let Some(p) = std::env::var_os("PROVISION_SANDBOX_PYTHON") {
        return PathBuf::from(p);
    }
    let out = Command::new("bash")
        .arg(repo().join("scripts/sandbox"))
        .arg("python")
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/sandbox python");
    assert!(out.status.success(), "scripts/sandbox python failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A running sandbox, stopped on drop.
pub struct Sandbox {
    child: Child,
    pub url: String,
    pub state: tempfile::TempDir,
}

impl Sandbox {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With the MQTT broker (mosquitto enforcing the account's IoT policies) on a free port.
    pub fn start_with_broker() -> Self {
        Self::start_with(&["--broker"])
    }

    /// With extra `scripts/sandbox.py` arguments (for example `--acm-validation-wait 5`).
    pub fn start_with(extra: &[&str]) -> Self {
        let state = tempfile::tempdir().unwrap();
        let mut child = Command::new(sandbox_python())
            .arg(repo().join("scripts/sandbox.py"))
            .args(["--port", "0"])
            .args(extra)
            .arg("--state-dir")
            .arg(state.path())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(state.path().join("sandbox.stderr")).unwrap())
            .spawn()
            .expect("start scripts/sandbox.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(state.path().join("sandbox.stderr"))
                    .unwrap_or_default();
                panic!("sandbox did not start: {line:?}; its stderr:\n{log}")
            })
            .to_string();
        Sandbox { child, url, state }
    }

    fn http(&self, method: &str, path: &str) -> String {
        let addr = self.url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
    }

    /// The broker's connection facts (`GET /_sandbox/broker`).
    pub fn broker(&self) -> serde_json::Value {
        serde_json::from_str(&self.http("GET", "/_sandbox/broker")).unwrap()
    }

    /// Take the broker down (the sandbox's AWS APIs stay up).
    pub fn stop_broker(&self) {
        self.http("POST", "/_sandbox/broker/stop");
    }

    /// `--port P --resolve HOST:P:127.0.0.1 --ca-file CA`: how verify reaches the sandbox broker.
    pub fn broker_args(&self) -> Vec<String> {
        let b = self.broker();
        vec![
            "--port".into(),
            b["port"].to_string(),
            "--resolve".into(),
            b["resolve"].as_str().unwrap().into(),
            "--ca-file".into(),
            b["ca_file"].as_str().unwrap().into(),
        ]
    }

    /// Forget every resource (moto's reset), as a new account.
    pub fn reset(&self) {
        self.http("POST", "/moto-api/reset");
        self.http("POST", "/_sandbox/requests/reset");
    }

    /// Forget the request log only (the account stays).
    pub fn reset_requests(&self) {
        self.http("POST", "/_sandbox/requests/reset");
    }

    /// How many AWS API requests reached the sandbox.
    pub fn request_count(&self) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&self.http("GET", "/_sandbox/requests")).unwrap();
        v["total"].as_u64().unwrap()
    }

    /// An IoT client for out-of-band changes (drift), as an operator in the console would make.
    pub async fn iot(&self) -> aws_sdk_iot::Client {
        let conf = aws_sdk_iot::Config::builder()
            .behavior_version(aws_sdk_iot::config::BehaviorVersion::latest())
            .region(aws_sdk_iot::config::Region::new(REGION))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_iot::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .build();
        aws_sdk_iot::Client::from_conf(conf)
    }
}

impl Sandbox {
    fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_iot::config::SharedCredentialsProvider::new(
                aws_sdk_iot::config::Credentials::new("testing", "testing", None, None, "test"),
            ))
            .build()
    }

    /// An ACM client, for out-of-band changes and checks.
    pub async fn acm(&self) -> aws_sdk_acm::Client {
        aws_sdk_acm::Client::new(&self.sdk_config())
    }

    /// A Route 53 client, for out-of-band changes and checks.
    pub async fn route53(&self) -> aws_sdk_route53::Client {
        aws_sdk_route53::Client::new(&self.sdk_config())
    }

    /// Create a public hosted zone, as the operator has it before provision runs; returns its id.
    pub async fn create_zone(&self, name: &str) -> String {
        let out = self
            .route53()
            .await
            .create_hosted_zone()
            .name(name)
            .caller_reference(format!("test-{name}"))
            .send()
            .await
            .unwrap();
        out.hosted_zone()
            .unwrap()
            .id()
            .trim_start_matches("/hostedzone/")
            .to_string()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of the example fleet (stations.yaml + templates) in a temp dir.
pub struct Fleet {
    pub dir: tempfile::TempDir,
}

impl Fleet {
    /// The example fleet without its `domain:` section (the stations' tests need no ACM wait).
    pub fn example() -> Self {
        let f = Self::example_with_domain();
        let mut out = String::new();
        let mut skipping = false;
        for line in f.read().lines() {
            if line.starts_with("domain:") {
                skipping = true;
                continue;
            }
            if skipping && (line.starts_with(' ') || line.trim().is_empty()) {
                continue;
            }
            skipping = false;
            out.push_str(line);
            out.push('\n');
        }
        f.write(&out);
        f
    }

    /// The example fleet as in the repository, with its custom domain.
    pub fn example_with_domain() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            repo().join("stations.yaml"),
            dir.path().join("stations.yaml"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        for t in ["station-policy.json.j2", "platform-policy.json.j2"] {
            std::fs::copy(
                repo().join("templates").join(t),
                dir.path().join("templates").join(t),
            )
            .unwrap();
        }
        Fleet { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("stations.yaml")
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn write(&self, text: &str) {
        std::fs::write(self.path(), text).unwrap();
    }

    pub fn read(&self) -> String {
        std::fs::read_to_string(self.path()).unwrap()
    }
}

/// Result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run `provision ARGS` in the fleet's directory against the sandbox (or no endpoint).
pub fn provision(sandbox: Option<&Sandbox>, dir: &Path, args: &[&str]) -> Run {
    provision_env(sandbox, dir, args, &[])
}

/// [`provision`] with extra environment variables.
pub fn provision_env(
    sandbox: Option<&Sandbox>,
    dir: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provision"));
    cmd.envs(envs.iter().copied());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    match sandbox {
        Some(s) => cmd.env("AWS_ENDPOINT_URL", &s.url),
        // Nothing listens there: any call would fail loudly.
        None => cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
    };
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run provision");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}
