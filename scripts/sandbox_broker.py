"""The sandbox's MQTT broker: mosquitto made to behave like AWS IoT Core's message broker.

Started by `sandbox.py --broker` (it needs the moto state, which lives in that process):

* TLS listener on 127.0.0.1 (a free port unless --broker-port), with a server certificate for the
  account's ATS endpoint host name (DescribeEndpoint iot:Data-ATS) and any --broker-name, signed by
  the sandbox CA. AWS: the endpoint presents a certificate for its host name (Amazon Root CA 1
  there; the sandbox CA here, so clients pass the sandbox CA as their trust anchor).
* Client certificates required and verified against the CA that signs device certificates. AWS:
  mutual TLS with a certificate the account issued or registered.
* Authorization by the plugin scripts/broker/authz.c, which asks `BrokerAuthorizer` below about
  every CONNECT, PUBLISH, SUBSCRIBE and delivery (RECEIVE). It evaluates the IoT policies attached
  to the client's certificate in the moto state right now, so a policy widened or detached in the
  account changes what the broker allows, as on AWS (where it takes a few minutes to propagate).
  mosquitto answers a denied CONNECT with CONNACK 135, a denied QoS 1 PUBLISH with PUBACK 135
  and a denied SUBSCRIBE with SUBACK 135 to MQTT 5 clients, as AWS does.

Not emulated: persistent-session limits, message size and rate limits, `$aws/` reserved topics,
policy conditions other than `iot:Connection.Thing.IsAttached`, NotAction / NotResource.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from typing import Any

PLUGIN_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "broker", "authz.c")


def log(msg: str) -> None:
    print(f"[sandbox broker] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# IoT policy evaluation
# --------------------------------------------------------------------------

# Which IoT action and resource type each broker question needs (AWS IoT policy actions).
ACTIONS = {
    "connect": ("iot:Connect", "client"),
    "publish": ("iot:Publish", "topic"),
    "receive": ("iot:Receive", "topic"),
    "subscribe": ("iot:Subscribe", "topicfilter"),
}


def iot_pattern_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IoT policy matching: `*` any characters (across `/`), `?` exactly one; nothing else is
    special (MQTT's `+` and `#` are plain characters in policies)."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


_VAR = re.compile(r"\$\{([^}]*)\}")


def substitute(text: str, variables: dict[str, str]) -> str | None:
    """Replace policy variables; None when one cannot be resolved (the statement then does not
    match, as on AWS)."""
    missing = False

    def repl(m: re.Match) -> str:
        nonlocal missing
        v = variables.get(m.group(1))
        if v is None:
            missing = True
            return ""
        return v

    out = _VAR.sub(repl, text)
    return None if missing else out


def as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def evaluate(documents: list[str], action: str, resource_arn: str, variables: dict[str, str],
             is_attached: bool) -> tuple[bool, str]:
    """AWS policy evaluation: an explicit Deny wins, else any Allow, else denied by default."""
    allowed_by = None
    for doc in documents:
        try:
            policy = json.loads(doc) if isinstance(doc, str) else doc
        except ValueError:
            continue
        for st in as_list(policy.get("Statement")):
            if not isinstance(st, dict) or "NotAction" in st or "NotResource" in st:
                continue
            cond = st.get("Condition")
            if cond:
                # Only the condition the Device Defender audit asks for is understood; a statement
                # with any other condition never applies.
                try:
                    (op, body), = cond.items()
                    (key, want), = body.items()
                except ValueError:
                    continue
                if op != "Bool" or key != "iot:Connection.Thing.IsAttached":
                    continue
                if str(as_list(want)[0]).lower() != str(is_attached).lower():
                    continue
            if not any(iot_pattern_match(a, action, ignore_case=True) for a in as_list(st.get("Action"))):
                continue
            hit = False
            for r in as_list(st.get("Resource")):
                r = substitute(str(r), variables)
                if r is not None and iot_pattern_match(r, resource_arn):
                    hit = True
                    break
            if not hit:
                continue
            if st.get("Effect") == "Deny":
                return False, f"explicitly denied: {action} on {resource_arn}"
            if st.get("Effect") == "Allow":
                allowed_by = True
    if allowed_by:
        return True, "allowed"
    return False, f"no attached policy allows {action} on {resource_arn}"


class BrokerAuthorizer:
    """Answers the mosquitto plugin's questions from the moto account state."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.server: socketserver.ThreadingUnixStreamServer | None = None
        self.decisions: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def decide(self, action: str, cert_id: str, client_id: str, resource: str) -> tuple[bool, str]:
        from moto.iot.models import iot_backends

        if action not in ACTIONS:
            return False, f"unknown action {action}"
        for account_id, regions in list(iot_backends.items()):
            for region, backend in list(regions.items()):
                cert = backend.certificates.get(cert_id)
                if cert is None:
                    continue
                if cert.status != "ACTIVE":
                    return False, f"certificate {cert_id[:12]} is {cert.status}, not ACTIVE"
                names = [name for (arn, name) in list(backend.principal_policies) if arn == cert.arn]
                docs = [backend.policies[n].document for n in names if n in backend.policies]
                things = [t for (arn, t) in list(backend.principal_things) if arn == cert.arn]
                variables = {"iot:ClientId": client_id}
                if client_id in things:
                    # iot:Connection.Thing.* resolve when the client id is the name of a thing
                    # attached to the certificate.
                    variables["iot:Connection.Thing.ThingName"] = client_id
                    thing = next((t for t in backend.things.values() if t.thing_name == client_id), None)
                    for k, v in (getattr(thing, "attributes", None) or {}).items():
                        variables[f"iot:Connection.Thing.Attributes[{k}]"] = v
                iot_action, kind = ACTIONS[action]
                arn = f"arn:{_partition(region)}:iot:{region}:{account_id}:{kind}/{resource}"
                if not docs:
                    return False, f"certificate {cert_id[:12]} has no policy attached"
                return evaluate(docs, iot_action, arn, variables, client_id in things)
        return False, f"certificate {cert_id[:12]} is not registered in the account"

    def handle_line(self, line: str) -> str:
        try:
            action, cert_id, hid, hres = line.strip().split(" ")
            client_id = "" if hid == "-" else bytes.fromhex(hid).decode("utf-8", "replace")
            resource = "" if hres == "-" else bytes.fromhex(hres).decode("utf-8", "replace")
            ok, why = self.decide(action, cert_id, client_id, resource)
        except Exception as e:  # fail closed
            action, client_id, resource, ok, why = "?", "?", "?", False, f"authorizer error: {e}"
        with self.lock:
            self.decisions.append({"action": action, "client_id": client_id, "resource": resource,
                                   "allowed": ok, "reason": why})
        return "ALLOW\n" if ok else f"DENY {why}\n"

    def start(self) -> None:
        authorizer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode("ascii", "replace")
                self.wfile.write(authorizer.handle_line(line).encode())

        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self.server = socketserver.ThreadingUnixStreamServer(self.socket_path, Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


# --------------------------------------------------------------------------
# mosquitto
# --------------------------------------------------------------------------


def build_plugin(cache_dir: str) -> str:
    """Compile the plugin once per source version (cached by hash)."""
    with open(PLUGIN_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    os.makedirs(cache_dir, exist_ok=True)
    out = os.path.join(cache_dir, f"authz-{digest}.so")
    if os.path.exists(out):
        return out
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise SystemExit("sandbox broker: no C compiler; install gcc (see .ci/run)")
    tmp = f"{out}.{os.getpid()}.tmp"
    res = subprocess.run([cc, "-O2", "-Wall", "-shared", "-fPIC", "-o", tmp, PLUGIN_SOURCE, "-lcrypto"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit("sandbox broker: cannot build the mosquitto plugin (install mosquitto-dev "
                         f"and libssl-dev, see .ci/run):\n{res.stderr}")
    os.replace(tmp, out)
    return out


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _set_pdeathsig() -> None:
    # mosquitto dies with the sandbox, even when the sandbox is SIGKILLed (tests drop it so).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    os.setpgrp()


class Broker:
    def __init__(self, *, state_dir: str, cache_dir: str, ca: Any, host_names: list[str],
                 port: int, bind: str = "127.0.0.1"):
        self.dir = os.path.join(state_dir, "broker")
        os.makedirs(self.dir, exist_ok=True)
        self.cache_dir = cache_dir
        self.ca = ca
        self.host_names = host_names
        self.bind = bind
        self.want_port = port
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.authorizer = BrokerAuthorizer(os.path.join(self.dir, "authz.sock"))
        self.mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(self.mosquitto):
            raise SystemExit("sandbox broker: mosquitto is not installed (apt-get install mosquitto; see .ci/run)")

    def _write_files(self, port: int) -> str:
        cert_pem, key_pem = server_cert(self.ca, self.host_names)
        with open(os.path.join(self.dir, "server.pem"), "w") as f:
            f.write(cert_pem)
        fd = os.open(os.path.join(self.dir, "server.key"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_pem)
        conf = os.path.join(self.dir, "mosquitto.conf")
        lines = [
            "# Generated by scripts/sandbox_broker.py: AWS IoT-like broker for provision's sandbox.",
            "per_listener_settings false",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            f"plugin {build_plugin(self.cache_dir)}",
            f"plugin_opt_socket {self.authorizer.socket_path}",
            f"listener {port} {self.bind}",
            "protocol mqtt",
            f"cafile {self.ca.pem_path}",
            f"certfile {os.path.join(self.dir, 'server.pem')}",
            f"keyfile {os.path.join(self.dir, 'server.key')}",
            "require_certificate true",
            "use_identity_as_username false",
        ]
        if os.geteuid() == 0:
            lines.insert(1, "user root")  # keep access to the state dir (0700, root's)
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        if self.proc and self.proc.poll() is None:
            return
        self.authorizer.start()
        last = ""
        for _attempt in range(5):
            port = self.want_port or self.port or _free_port(self.bind)
            conf = self._write_files(port)
            logf = open(os.path.join(self.dir, "mosquitto.log"), "ab")
            self.proc = subprocess.Popen([self.mosquitto, "-c", conf], stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf, preexec_fn=_set_pdeathsig)
            logf.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection((self.bind, port), timeout=0.2):
                        self.port = port
                        log(f"mosquitto pid {self.proc.pid} on {self.bind}:{port} for {', '.join(self.host_names)}")
                        self._write_info()
                        return
                except OSError:
                    time.sleep(0.05)
            last = self._tail()
            self.stop_process()
            if self.want_port:
                break
        raise SystemExit(f"sandbox broker: mosquitto did not start; its log:\n{last}")

    def _tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "mosquitto.log"), errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def info(self) -> dict[str, Any]:
        running = bool(self.proc and self.proc.poll() is None)
        host = self.host_names[0]
        return {
            "running": running,
            "host": host,
            "names": self.host_names,
            "address": self.bind,
            "port": self.port,
            "resolve": f"{host}:{self.port}:{self.bind}",
            "ca_file": self.ca.pem_path,
            "log": os.path.join(self.dir, "mosquitto.log"),
        }

    def _write_info(self) -> None:
        tmp = os.path.join(self.dir, "broker.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.info(), f)
        os.replace(tmp, os.path.join(self.dir, "broker.json"))

    def stop_process(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        self.stop_process()
        self.authorizer.stop()
        if self.port:
            self._write_info()
        log("mosquitto stopped")


def server_cert(ca: Any, names: list[str]) -> tuple[str, str]:
    """A TLS server certificate for `names`, signed by the sandbox CA; returns (cert PEM, key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem
