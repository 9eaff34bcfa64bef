#!/usr/bin/env python3
"""Self-test for scripts/sandbox.py and scripts/sandbox.

Run with the sandbox venv's python:
    "$(scripts/sandbox python)" scripts/test_sandbox.py [-v]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # sandbox_broker
SERVER = os.path.join(HERE, "sandbox.py")
SANDBOX_SH = os.path.join(HERE, "sandbox")
REGION = "cn-northwest-1"


class Sandbox:
    """sandbox.py on a free port in a temp state dir."""

    def __init__(self, state_dir: str, *extra: str):
        self.state_dir = state_dir
        with open(state_dir + ".stderr", "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", SERVER, "--port", "0", "--state-dir", state_dir, *extra],
                stdout=subprocess.PIPE, stderr=err, text=True,
            )
        line: list[str] = []
        t = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(30)
        if not line or not line[0].startswith("READY http://"):
            self.stop()
            raise RuntimeError(f"sandbox not ready: {line!r}; see {state_dir}.stderr")
        assert re.fullmatch(r"READY http://127\.0\.0\.1:\d+\n", line[0]), line[0]
        self.url = line[0].split()[1]

    def client(self, service: str, region: str = REGION):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path) as r:
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" else body

    def post(self, path: str, obj=None):
        data = json.dumps(obj or {}).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


def load_ca(state_dir: str) -> x509.Certificate:
    with open(os.path.join(state_dir, "ca", "ca.pem"), "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def der_id(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def assert_signed_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)  # checks issuer name + signature
    ca.public_key().verify(  # and once more explicitly (ECDSA P-256 CA)
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
    )


class SandboxTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sandbox-test-")
        cls.dir = os.path.join(cls.tmp, "state")
        cls.sb = Sandbox(cls.dir, "--acm-validation-wait", "1")
        cls.iot = cls.sb.client("iot")
        cls.acm = cls.sb.client("acm")
        cls.r53 = cls.sb.client("route53")

    @classmethod
    def tearDownClass(cls):
        cls.sb.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_keys_and_certificate_chain_to_local_ca(self):
        ca = load_ca(self.dir)
        self.assertEqual(self.sb.get("/_sandbox/ca").decode(),
                         ca.public_bytes(serialization.Encoding.PEM).decode())
        ids = set()
        for _ in range(2):
            r = self.iot.create_keys_and_certificate(setAsActive=True)
            cert = x509.load_pem_x509_certificate(r["certificatePem"].encode())
            assert_signed_by(cert, ca)
            self.assertEqual(r["certificateId"], der_id(r["certificatePem"]))
            self.assertTrue(r["certificateArn"].endswith("cert/" + r["certificateId"]))
            self.assertEqual(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
                             "AWS IoT Certificate")
            self.assertGreaterEqual(cert.not_valid_after_utc.year, 2049)
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            self.assertIn(ExtendedKeyUsageOID.CLIENT_AUTH, list(eku))
            key = serialization.load_pem_private_key(r["keyPair"]["PrivateKey"].encode(), None)
            self.assertEqual(key.key_size, 2048)
            self.assertEqual(key.public_key().public_numbers(), cert.public_key().public_numbers())
            d = self.iot.describe_certificate(certificateId=r["certificateId"])["certificateDescription"]
            self.assertEqual(d["certificatePem"], r["certificatePem"])
            self.assertEqual(d["validity"]["notAfter"].year, 2049)
            ids.add(r["certificateId"])
        self.assertEqual(len(ids), 2)

    def test_certificate_from_csr_keeps_csr_key(self):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-0001")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        r = self.iot.create_certificate_from_csr(certificateSigningRequest=pem, setAsActive=True)
        cert = x509.load_pem_x509_certificate(r["certificatePem"].encode())
        self.assertEqual(cert.public_key().public_numbers(), key.public_key().public_numbers())
        self.assertEqual(cert.subject, subject)
        assert_signed_by(cert, load_ca(self.dir))
        self.assertEqual(r["certificateId"], der_id(r["certificatePem"]))
        status = lambda cid: self.iot.describe_certificate(certificateId=cid)["certificateDescription"]["status"]
        self.assertEqual(status(r["certificateId"]), "ACTIVE")
        # setAsActive=false must give an INACTIVE certificate, as on AWS.
        key2 = ec.generate_private_key(ec.SECP256R1())
        csr2 = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key2, hashes.SHA256())
        r2 = self.iot.create_certificate_from_csr(
            certificateSigningRequest=csr2.public_bytes(serialization.Encoding.PEM).decode(),
            setAsActive=False)
        self.assertEqual(status(r2["certificateId"]), "INACTIVE")
        with self.assertRaises(ClientError) as e:
            self.iot.create_certificate_from_csr(certificateSigningRequest="not a csr")
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidRequestException")

    def test_describe_endpoint_is_stable(self):
        ats = {self.iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
               for _ in range(3)}
        self.assertEqual(len(ats), 1)
        (addr,) = ats
        m = re.fullmatch(r"([a-z0-9]{14})-ats\.iot\.cn-northwest-1\.amazonaws\.com\.cn", addr)
        self.assertIsNotNone(m, addr)
        legacy = self.iot.describe_endpoint(endpointType="iot:Data")["endpointAddress"]
        self.assertEqual(legacy, f"{m.group(1)}.iot.cn-northwest-1.amazonaws.com.cn")
        other = self.sb.client("iot", "us-east-1").describe_endpoint(endpointType="iot:Data-ATS")
        self.assertRegex(other["endpointAddress"], r"^[a-z0-9]{14}-ats\.iot\.us-east-1\.amazonaws\.com$")
        self.assertNotEqual(other["endpointAddress"].split("-")[0], m.group(1))

    def test_create_thing_existing_name(self):
        a = self.iot.create_thing(thingName="dup", attributePayload={"attributes": {"k": "v"}})
        b = self.iot.create_thing(thingName="dup", attributePayload={"attributes": {"k": "v"}})
        self.assertEqual(a["thingId"], b["thingId"])
        with self.assertRaises(ClientError) as e:
            self.iot.create_thing(thingName="dup", attributePayload={"attributes": {"k": "w"}})
        self.assertEqual(e.exception.response["Error"]["Code"], "ResourceAlreadyExistsException")
        self.iot.delete_thing(thingName="dup")

    def _wait_status(self, arn: str, want: str, seconds: float) -> str:
        deadline = time.time() + seconds
        status = None
        while time.time() < deadline:
            status = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"]
            if status == want:
                break
            time.sleep(0.25)
        return status

    def _validation_record(self, arn: str) -> dict:
        deadline = time.time() + 5
        while time.time() < deadline:
            opts = self.acm.describe_certificate(CertificateArn=arn)["Certificate"][
                "DomainValidationOptions"]
            if opts and opts[0].get("ResourceRecord"):
                return opts[0]["ResourceRecord"]
            time.sleep(0.2)
        self.fail("ACM published no validation record")

    def test_acm_issues_once_the_validation_record_is_in_route53(self):
        zone = self.r53.create_hosted_zone(Name="acm-test.example.com",
                                           CallerReference="acm-test")["HostedZone"]["Id"]
        arn = self.acm.request_certificate(DomainName="mqtt.acm-test.example.com",
                                           ValidationMethod="DNS")["CertificateArn"]
        # Published a moment after the request, as on AWS.
        first = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
        self.assertFalse(any(o.get("ResourceRecord") for o in first["DomainValidationOptions"]))
        record = self._validation_record(arn)
        # Without the CNAME, ACM cannot validate.
        self.assertEqual(self._wait_status(arn, "ISSUED", 2), "PENDING_VALIDATION")
        self.r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {
                "Name": record["Name"], "Type": "CNAME", "TTL": 300,
                "ResourceRecords": [{"Value": record["Value"]}]}}]})
        self.assertEqual(self._wait_status(arn, "ISSUED", 5), "ISSUED")

    def test_domain_configuration_as_aws(self):
        zone = self.r53.create_hosted_zone(Name="dc-test.example.com",
                                           CallerReference="dc-test")["HostedZone"]["Id"]
        name = "mqtt.dc-test.example.com"
        arn = self.acm.request_certificate(DomainName=name, ValidationMethod="DNS")["CertificateArn"]
        # Not ISSUED yet: refused.
        with self.assertRaises(ClientError) as e:
            self.iot.create_domain_configuration(domainConfigurationName="dc", domainName=name,
                                                 serverCertificateArns=[arn], serviceType="DATA")
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidRequestException")
        record = self._validation_record(arn)
        self.r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {
                "Name": record["Name"], "Type": "CNAME", "TTL": 300,
                "ResourceRecords": [{"Value": record["Value"]}]}}]})
        self.assertEqual(self._wait_status(arn, "ISSUED", 5), "ISSUED")
        with self.assertRaises(ClientError):
            self.iot.create_domain_configuration(domainConfigurationName="IoT:x", domainName=name,
                                                 serverCertificateArns=[arn])
        with self.assertRaises(ClientError):  # the certificate does not cover another name
            self.iot.create_domain_configuration(domainConfigurationName="other",
                                                 domainName="other.dc-test.example.com",
                                                 serverCertificateArns=[arn])
        self.iot.create_domain_configuration(domainConfigurationName="dc", domainName=name,
                                             serverCertificateArns=[arn])
        d = self.iot.describe_domain_configuration(domainConfigurationName="dc")
        self.assertEqual(d["tlsConfig"]["securityPolicy"], "IoTSecurityPolicy_TLS13_1_2_2022_10")
        self.assertEqual(d["serviceType"], "DATA")
        self.iot.update_domain_configuration(
            domainConfigurationName="dc",
            tlsConfig={"securityPolicy": "IoTSecurityPolicy_TLS13_1_3_2022_10"})
        d = self.iot.describe_domain_configuration(domainConfigurationName="dc")
        self.assertEqual(d["tlsConfig"]["securityPolicy"], "IoTSecurityPolicy_TLS13_1_3_2022_10")
        # In use: ACM keeps the certificate; ENABLED: IoT keeps the configuration.
        with self.assertRaises(ClientError) as e:
            self.acm.delete_certificate(CertificateArn=arn)
        self.assertEqual(e.exception.response["Error"]["Code"], "ResourceInUseException")
        with self.assertRaises(ClientError):
            self.iot.delete_domain_configuration(domainConfigurationName="dc")
        self.iot.update_domain_configuration(domainConfigurationName="dc",
                                             domainConfigurationStatus="DISABLED")
        self.iot.delete_domain_configuration(domainConfigurationName="dc")
        self.acm.delete_certificate(CertificateArn=arn)
        # Requesting again with a token whose certificate was deleted makes a new one.
        a = self.acm.request_certificate(DomainName=name, ValidationMethod="DNS",
                                         IdempotencyToken="tok1")["CertificateArn"]
        self.assertEqual(a, self.acm.request_certificate(
            DomainName=name, ValidationMethod="DNS", IdempotencyToken="tok1")["CertificateArn"])
        self.acm.delete_certificate(CertificateArn=a)
        b = self.acm.request_certificate(DomainName=name, ValidationMethod="DNS",
                                         IdempotencyToken="tok1")["CertificateArn"]
        self.assertNotEqual(a, b)

    def test_request_log(self):
        self.sb.post("/_sandbox/requests/reset")
        self.assertEqual(self.sb.get("/_sandbox/requests")["total"], 0)
        self.iot.create_thing(thingName="logged")
        self.iot.list_things(attributeName="a", attributeValue="b")
        cert_arn = self.iot.create_keys_and_certificate()["certificateArn"]
        self.iot.attach_thing_principal(thingName="logged", principal=cert_arn)
        self.iot.create_policy(policyName="lp", policyDocument='{"Version":"2012-10-17","Statement":[]}')
        self.iot.attach_policy(policyName="lp", target=cert_arn)
        self.iot.list_targets_for_policy(policyName="lp")
        self.acm.list_certificates()
        self.r53.list_hosted_zones()
        urllib.request.urlopen(self.sb.url + "/moto-api/").read()  # not an AWS call
        log = self.sb.get("/_sandbox/requests")
        got = [(r["service"], r["action"]) for r in log["requests"]]
        self.assertEqual(got, [
            ("iot", "CreateThing"), ("iot", "ListThings"), ("iot", "CreateKeysAndCertificate"),
            ("iot", "AttachThingPrincipal"), ("iot", "CreatePolicy"), ("iot", "AttachPolicy"),
            ("iot", "ListTargetsForPolicy"), ("acm", "ListCertificates"),
            ("route53", "ListHostedZones"),
        ])
        self.assertEqual(log["total"], 9)
        self.assertEqual(log["counts"]["iot:CreateThing"], 1)
        first = log["requests"][0]
        self.assertEqual((first["method"], first["path"]), ("POST", "/things/logged"))
        self.assertEqual(self.sb.get("/_sandbox/requests?service=acm")["total"], 1)
        self.sb.post("/_sandbox/requests/reset")
        self.assertEqual(self.sb.get("/_sandbox/requests"), {"total": 0, "counts": {}, "requests": []})
        with open(os.path.join(self.dir, "requests.log")) as f:
            lines = [json.loads(x) for x in f]
        self.assertTrue(any(x["action"] == "ListHostedZones" for x in lines))


class QuotaTest(unittest.TestCase):
    """A second sandbox sharing the first one's CA, with quotas on."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sandbox-quota-")
        first = os.path.join(self.tmp, "a")
        self.a = Sandbox(first)
        self.addCleanup(self.a.stop)
        self.b = Sandbox(os.path.join(self.tmp, "b"), "--ca-dir", os.path.join(first, "ca"),
                         "--quota-scale", "1")
        self.addCleanup(self.b.stop)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_shared_ca_and_throttling(self):
        self.assertEqual(self.a.get("/_sandbox/ca"), self.b.get("/_sandbox/ca"))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "b", "ca")))

        iot = self.b.client("iot")
        ok = throttled = 0
        for _ in range(30):  # ListThings: 10/s, burst 10
            try:
                iot.list_things()
                ok += 1
            except ClientError as e:
                self.assertEqual(e.response["Error"]["Code"], "ThrottlingException")
                self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 400)
                throttled += 1
        self.assertGreaterEqual(ok, 10)
        self.assertGreater(throttled, 0)
        iot.describe_endpoint(endpointType="iot:Data-ATS")  # not in the table: never throttled

        r53 = self.b.client("route53")
        codes = []
        for _ in range(12):  # Route 53: 5/s account-wide
            try:
                r53.list_hosted_zones()
                codes.append("ok")
            except ClientError as e:
                codes.append(e.response["Error"]["Code"])
        self.assertIn("Throttling", codes)

        acm = self.b.client("acm")
        arn = acm.request_certificate(DomainName="d.example.com")["CertificateArn"]
        acm_codes = []
        for _ in range(30):  # ACM DescribeCertificate: 10/s
            try:
                acm.describe_certificate(CertificateArn=arn)
                acm_codes.append("ok")
            except ClientError as e:
                acm_codes.append(e.response["Error"]["Code"])
        self.assertIn("ThrottlingException", acm_codes)

        log = self.b.get("/_sandbox/requests")
        self.assertTrue(any(r["throttled"] and r["status"] == 400 for r in log["requests"]))

        # Runtime knobs: quotas off, 200 ms latency.
        self.b.post("/_sandbox/quota", {"scale": 0, "latency_ms": 200})
        t0 = time.monotonic()
        for _ in range(3):
            iot.list_things()
        self.assertGreaterEqual(time.monotonic() - t0, 0.6)


class PolicyEvaluationTest(unittest.TestCase):
    """The broker's IoT policy semantics (scripts/sandbox_broker.py)."""

    def test_patterns(self):
        from sandbox_broker import iot_pattern_match as m

        self.assertTrue(m("topic/device/*", "topic/device/station/up/st000"))  # across levels
        self.assertTrue(m("client/st00?", "client/st001"))
        self.assertFalse(m("client/st00?", "client/st0010"))
        self.assertTrue(m("topicfilter/up/+", "topicfilter/up/+"))  # MQTT wildcards are literal
        self.assertFalse(m("topicfilter/up/+", "topicfilter/up/st000"))
        self.assertFalse(m("topic/a.b", "topic/aXb"))  # regex characters are literal

    def test_evaluate(self):
        from sandbox_broker import evaluate

        arn = "arn:aws-cn:iot:cn-northwest-1:123456789012:"
        allow = json.dumps({"Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": arn + "client/${iot:ClientId}"},
            {"Effect": "Allow", "Action": ["iot:Publish"], "Resource": [arn + "topic/up/*"]},
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": arn + "topicfilter/${iot:Connection.Thing.ThingName}/down"}]})
        deny = json.dumps({"Statement": [
            {"Effect": "Deny", "Action": "iot:*", "Resource": arn + "topic/up/secret"}]})
        v = {"iot:ClientId": "st000"}
        self.assertTrue(evaluate([allow], "iot:Connect", arn + "client/st000", v, False)[0])
        self.assertFalse(evaluate([allow], "iot:Connect", arn + "client/st001", v, False)[0])
        self.assertTrue(evaluate([allow], "iot:Publish", arn + "topic/up/a/b", v, False)[0])
        ok, why = evaluate([allow, deny], "iot:Publish", arn + "topic/up/secret", v, False)
        self.assertFalse(ok)
        self.assertIn("explicitly denied", why)
        # An unresolvable variable (no attached thing named like the client) never matches.
        self.assertFalse(evaluate([allow], "iot:Subscribe", arn + "topicfilter/st000/down", v, False)[0])
        v2 = dict(v, **{"iot:Connection.Thing.ThingName": "st000"})
        self.assertTrue(evaluate([allow], "iot:Subscribe", arn + "topicfilter/st000/down", v2, True)[0])
        ok, why = evaluate([], "iot:Connect", arn + "client/st000", v, False)
        self.assertFalse(ok)
        self.assertIn("no attached policy allows iot:Connect", why)


class BrokerTest(unittest.TestCase):
    """sandbox.py --broker: mosquitto up with a server certificate for the ATS endpoint, and the
    authorizer answering from the account's state."""

    def test_broker_serves_the_endpoint_and_authorizes_from_policies(self):
        import socket
        import ssl

        tmp = tempfile.mkdtemp(prefix="sandbox-broker-")
        self.addCleanup(shutil.rmtree, tmp, True)
        sb = Sandbox(os.path.join(tmp, "state"), "--broker")
        self.addCleanup(sb.stop)
        with urllib.request.urlopen(sb.url + "/_sandbox/broker") as r:
            info = json.loads(r.read())
        iot = sb.client("iot")
        host = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
        self.assertTrue(info["running"])
        self.assertEqual(info["host"], host)
        self.assertEqual(info["resolve"], f"{host}:{info['port']}:127.0.0.1")

        # TLS: the server certificate verifies for the endpoint name against the sandbox CA.
        ctx = ssl.create_default_context(cafile=info["ca_file"])
        with socket.create_connection(("127.0.0.1", info["port"]), timeout=5) as raw:
            try:
                with ctx.wrap_socket(raw, server_hostname=host) as tls:
                    names = [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]
                    self.assertEqual(names, [host])
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
                # Without a client certificate the broker may end the handshake; the server
                # certificate was verified before that.
                self.assertNotIn("CERTIFICATE_VERIFY_FAILED", str(e))

        # The authorizer: a certificate with a policy for client/st000 only.
        cert = iot.create_keys_and_certificate(setAsActive=True)
        arn = "arn:aws-cn:iot:cn-northwest-1:123456789012:"
        iot.create_policy(policyName="p", policyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": arn + "client/st000"}]}))
        iot.attach_policy(policyName="p", target=cert["certificateArn"])

        def ask(action: str, client: str, resource: str) -> str:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(os.path.join(tmp, "state", "broker", "authz.sock"))
                s.sendall(f"{action} {cert['certificateId']} {client.encode().hex()} "
                          f"{resource.encode().hex()}\n".encode())
                return s.makefile().readline()

        self.assertEqual(ask("connect", "st000", "st000"), "ALLOW\n")
        self.assertTrue(ask("connect", "st001", "st001").startswith("DENY no attached policy"))
        self.assertTrue(ask("publish", "st000", "up/st000").startswith("DENY"))
        iot.update_certificate(certificateId=cert["certificateId"], newStatus="INACTIVE")
        self.assertIn("is INACTIVE", ask("connect", "st000", "st000"))

        # Down and up again (tests of outages).
        req = urllib.request.Request(sb.url + "/_sandbox/broker/stop", method="POST")
        with urllib.request.urlopen(req) as r:
            self.assertFalse(json.loads(r.read())["running"])
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", info["port"]), timeout=2).close()


class ShellScriptTest(unittest.TestCase):
    def test_start_status_stop(self):
        tmp = tempfile.mkdtemp(prefix="sandbox-sh-")
        self.addCleanup(shutil.rmtree, tmp, True)
        env = {k: v for k, v in os.environ.items() if k != "AWS_REGION"}
        state = os.path.join(tmp, "st")
        out = subprocess.run([SANDBOX_SH, "start", "--state-dir", state], env=env, cwd=tmp,
                             capture_output=True, text=True, timeout=60)
        self.addCleanup(subprocess.run, [SANDBOX_SH, "stop", "--state-dir", state], env=env,
                        capture_output=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        vals = dict(re.findall(r"^export (\w+)=(.*)$", out.stdout, re.M))
        self.assertEqual(set(vals), {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                     "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "PROVISION_SANDBOX_DIR"})
        self.assertEqual(vals["AWS_REGION"], "cn-northwest-1")
        self.assertEqual(vals["PROVISION_SANDBOX_DIR"], os.path.realpath(state))
        with open(os.path.join(state, "env")) as f:
            self.assertEqual(f.read(), out.stdout)
        with urllib.request.urlopen(vals["AWS_ENDPOINT_URL"] + "/_sandbox/health") as r:
            self.assertTrue(json.loads(r.read())["ok"])
        # starting again is a no-op that prints the same env
        again = subprocess.run([SANDBOX_SH, "start", "--state-dir", state], env=env,
                               capture_output=True, text=True, timeout=60)
        self.assertEqual(again.stdout, out.stdout)
        # AWS_REGION set by the user is kept
        env2 = dict(env, AWS_REGION="eu-west-1")
        st2 = os.path.join(tmp, "st2")
        out2 = subprocess.run([SANDBOX_SH, "start", "--state-dir", st2], env=env2,
                              capture_output=True, text=True, timeout=60)
        self.addCleanup(subprocess.run, [SANDBOX_SH, "stop", "--state-dir", st2], env=env,
                        capture_output=True)
        self.assertIn("export AWS_REGION=eu-west-1\n", out2.stdout)
        status = subprocess.run([SANDBOX_SH, "status", "--state-dir", state],
                                capture_output=True, text=True)
        self.assertEqual(status.returncode, 0)
        self.assertIn(vals["AWS_ENDPOINT_URL"], status.stdout)
        stop = subprocess.run([SANDBOX_SH, "stop", "--state-dir", state], capture_output=True, text=True)
        self.assertEqual(stop.returncode, 0, stop.stderr)
        self.assertFalse(os.path.exists(os.path.join(state, "sandbox.pid")))
        self.assertNotEqual(subprocess.run([SANDBOX_SH, "status", "--state-dir", state],
                                           capture_output=True).returncode, 0)
        again = subprocess.run([SANDBOX_SH, "stop", "--state-dir", state], capture_output=True)
        self.assertEqual(again.returncode, 0)
        py = subprocess.run([SANDBOX_SH, "python"], capture_output=True, text=True)
        self.assertTrue(os.access(py.stdout.strip(), os.X_OK), py.stdout)


if __name__ == "__main__":
    unittest.main()
