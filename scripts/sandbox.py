#!/usr/bin/env python3
"""Local AWS sandbox for `provision`: a moto server with AWS-fidelity fixes.

Run with the sandbox venv's python (see `scripts/sandbox python`):

    sandbox.py [--host 127.0.0.1] [--port 0] [--state-dir DIR] [--ca-dir DIR]
               [--acm-validation-wait SECONDS]
               [--quota-scale F] [--latency-ms N] [--quota SERVICE:ACTION=RPS ...]

On start it prints exactly one line `READY http://HOST:PORT` to stdout; all
logging goes to stderr.  SIGTERM / SIGINT shut it down cleanly.

The WSGI stack (outermost first) is:

    SandboxControl   /_sandbox/* endpoints (request log, CA, quota knobs)
    ApiClassifier    works out (service, region, action) once per request
    RequestLog       counts every AWS request, appends DIR/requests.log
    QuotaLayer       emulated AWS quotas: latency + per-API token buckets
    moto             DomainDispatcherApplication (patched, see below)

Each layer is a small class wrapping the next WSGI app, so further emulation
layers slot in beside the existing ones in `build_app`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# moto is imported lazily (after the environment is prepared) in main().

LOG_PREFIX = "[sandbox]"

# Device certificates: AWS IoT issues them valid until 2049-12-31T23:59:59Z.
DEVICE_CERT_NOT_AFTER = dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
CA_NOT_AFTER = dt.datetime(2050, 1, 1, 0, 0, 0, tzinfo=dt.timezone.utc)

# Paths that belong to the sandbox / moto itself and are not AWS calls.
INTERNAL_PREFIXES = ("/_sandbox/", "/moto-api/")
INTERNAL_PATHS = ("/_sandbox", "/moto-api", "/favicon.ico")


def log(msg: str) -> None:
    print(f"{LOG_PREFIX} {msg}", file=sys.stderr, flush=True)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


# --------------------------------------------------------------------------
# Local CA
# --------------------------------------------------------------------------


class LocalCA:
    """One stable CA per CA dir (ca.key + ca.pem, PEM, usable by mosquitto)."""

    def __init__(self, key: Any, cert: x509.Certificate, ca_dir: str):
        self.key = key
        self.cert = cert
        self.ca_dir = ca_dir
        self.key_path = os.path.join(ca_dir, "ca.key")
        self.pem_path = os.path.join(ca_dir, "ca.pem")
        self.pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self._ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())

    @classmethod
    def load_or_create(cls, ca_dir: str) -> "LocalCA":
        os.makedirs(ca_dir, exist_ok=True)
        key_path = os.path.join(ca_dir, "ca.key")
        pem_path = os.path.join(ca_dir, "ca.pem")
        # A lock file so two sandboxes sharing one --ca-dir never race.
        with open(os.path.join(ca_dir, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            have_key, have_pem = os.path.exists(key_path), os.path.exists(pem_path)
            if have_key and have_pem:
                with open(key_path, "rb") as f:
                    key = serialization.load_pem_private_key(f.read(), password=None)
                with open(pem_path, "rb") as f:
                    cert = x509.load_pem_x509_certificate(f.read())
                if cert.public_key().public_numbers() != key.public_key().public_numbers():
                    raise SystemExit(f"{ca_dir}: ca.key does not match ca.pem")
                log(f"reusing CA {pem_path}")
                return cls(key, cert, ca_dir)
            if have_key or have_pem:
                raise SystemExit(
                    f"{ca_dir}: only one of ca.key / ca.pem exists; remove it or restore the other"
                )
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "provision sandbox"),
                    x509.NameAttribute(
                        NameOID.COMMON_NAME, f"provision sandbox local CA {uuid.uuid4().hex[:8]}"
                    ),
                ]
            )
            now = _utcnow()
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(CA_NOT_AFTER)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=True,
                        crl_sign=True,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .sign(key, hashes.SHA256())
            )
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _atomic_write(key_path, key_pem, 0o600)
            _atomic_write(pem_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
            log(f"created CA {pem_path}")
            return cls(key, cert, ca_dir)

    def issue_device_cert(self, public_key: Any, subject: x509.Name) -> str:
        """Sign a device (client) certificate for `public_key`; returns PEM."""
        now = _utcnow()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(DEVICE_CERT_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski),
                critical=False,
            )
        )
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def _atomic_write(path: str, data: bytes, mode: int) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# moto patches
# --------------------------------------------------------------------------

_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"


def endpoint_prefix(account_id: str, region: str, kind: str) -> str:
    """14 lowercase alphanumerics, stable for (account, region, kind), starting
    with a letter like real AWS IoT endpoint prefixes."""
    n = int.from_bytes(hashlib.sha256(f"{account_id}/{region}/{kind}".encode()).digest(), "big")
    out = [_ALNUM[10 + n % 26]]
    n //= 26
    for _ in range(13):
        out.append(_ALNUM[n % 36])
        n //= 36
    return "".join(out)


def endpoint_address(account_id: str, region: str, endpoint_type: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    if endpoint_type in ("iot:Data", "iot:Data-ATS"):
        # AWS: the legacy and ATS data endpoints share one prefix.
        p = endpoint_prefix(account_id, region, "data")
        host = f"{p}-ats" if endpoint_type == "iot:Data-ATS" else p
        return f"{host}.iot.{region}.{suffix}"
    if endpoint_type == "iot:CredentialProvider":
        p = endpoint_prefix(account_id, region, "credentials")
        return f"{p}.credentials.iot.{region}.{suffix}"
    if endpoint_type == "iot:Jobs":
        p = endpoint_prefix(account_id, region, "jobs")
        return f"{p}.jobs.iot.{region}.{suffix}"
    raise ValueError(endpoint_type)


def _der_cert_id(certificate_pem: str) -> str:
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def apply_moto_patches(ca: LocalCA, acm_validation_wait: float) -> None:
    from moto import settings as moto_settings
    from moto.core.config import default_user_config
    from moto.iot import exceptions as iot_exc
    from moto.iot import models as iot_models

    # --- (a)/(b) certificateId = SHA-256 of the DER certificate -------------
    # AWS computes certificateId as the hex SHA-256 fingerprint of the DER
    # bytes; moto by default hashes the PEM text unless its `iot.use_valid_cert`
    # config is on.  Turn the config on (so /moto-api/config agrees) AND patch
    # compute_cert_id so the DER id can't be switched off; fall back to moto's
    # PEM hash only for unparseable input (AWS would reject that anyway).
    default_user_config.setdefault("iot", {})["use_valid_cert"] = True

    def compute_cert_id(self: Any, certificate_pem: str) -> str:
        try:
            return _der_cert_id(certificate_pem)
        except Exception:
            return self.compute_pem_cert_id(certificate_pem)

    iot_models.FakeCertificate.compute_cert_id = compute_cert_id

    # DescribeCertificate `validity` reports the certificate's own
    # notBefore/notAfter on AWS; moto reports now±1 day.
    orig_cert_init = iot_models.FakeCertificate.__init__

    def cert_init(self: Any, certificate_pem: str, *a: Any, **kw: Any) -> None:
        orig_cert_init(self, certificate_pem, *a, **kw)
        try:
            c = x509.load_pem_x509_certificate(certificate_pem.encode())
            self.validity_not_before = c.not_valid_before_utc.replace(tzinfo=None)
            self.validity_not_after = c.not_valid_after_utc.replace(tzinfo=None)
        except Exception:
            pass

    iot_models.FakeCertificate.__init__ = cert_init

    # --- (a) one stable CA signs every device certificate -------------------
    # AWS signs CreateKeysAndCertificate certificates with its own CA (subject
    # CN "AWS IoT Certificate", valid until 2049, client-auth).  moto
    # self-signs each certificate with a throwaway key, so nothing chains.
    # CreateKeysAndCertificate already generates an RSA-2048 key pair and calls
    # this method with it; we sign that key's certificate with the local CA.
    def _generate_certificate_pem(
        self: Any, domain_name: str, subject: x509.Name, key: Any = None
    ) -> str:
        key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return ca.issue_device_cert(key.public_key(), subject)

    iot_models.IoTBackend._generate_certificate_pem = _generate_certificate_pem

    # --- (b) CreateCertificateFromCsr certifies the CSR's own key -----------
    # AWS signs the public key in the CSR (subject taken from the CSR) so the
    # caller's private key matches the returned certificate; moto certifies a
    # fresh random key instead.  AWS also rejects CSRs with a bad signature or
    # an unsupported key.
    def create_certificate_from_csr(self: Any, csr: str, set_as_active: bool) -> Any:
        try:
            req = x509.load_pem_x509_csr((csr or "").encode())
        except Exception:
            raise iot_exc.InvalidRequestException("The certificate signing request is not valid.")
        if not req.is_signature_valid:
            raise iot_exc.InvalidRequestException(
                "The certificate signing request signature is not valid."
            )
        pub = req.public_key()
        ok = (isinstance(pub, rsa.RSAPublicKey) and pub.key_size >= 2048) or (
            isinstance(pub, ec.EllipticCurvePublicKey)
            and pub.curve.name in ("secp256r1", "secp384r1", "secp521r1")
        )
        if not ok:
            raise iot_exc.InvalidRequestException(
                "The certificate signing request uses an unsupported key type or size."
            )
        pem = ca.issue_device_cert(pub, req.subject)
        # setAsActive arrives as the query string "false"/"true"; moto passes the string on, and
        # "false" is truthy, so the certificate came out ACTIVE.  AWS honours setAsActive=false
        # (an INACTIVE certificate), which provision relies on for crash safety.
        if isinstance(set_as_active, str):
            set_as_active = set_as_active.strip().lower() == "true"
        return self.register_certificate(
            pem, ca_certificate_pem=None, set_as_active=bool(set_as_active), status="INACTIVE"
        )

    iot_models.IoTBackend.create_certificate_from_csr = create_certificate_from_csr

    # --- (c) DescribeEndpoint: one fixed answer per account/region/type -----
    # AWS returns the same endpoint every time (prefix is per account+region);
    # moto generates a new random host on every call.
    def describe_endpoint(self: Any, endpoint_type: str) -> Any:
        ep = iot_models.FakeEndpoint(endpoint_type, self.region_name)  # moto's validation
        ep.endpoint = endpoint_address(self.account_id, self.region_name, endpoint_type)
        self.endpoint = ep
        return ep

    iot_models.IoTBackend.describe_endpoint = describe_endpoint

    # --- (g) CreateThing on an existing name --------------------------------
    # AWS: same name + same configuration succeeds and returns the existing
    # thing (same thingId); same name + different attributes/type fails with
    # ResourceAlreadyExistsException (409).  moto silently replaces the thing
    # (new thingId, version reset to 1).
    orig_create_thing = iot_models.IoTBackend.create_thing

    def create_thing(self: Any, thing_name: str, thing_type_name: str,
                     attribute_payload: Any, billing_group_name: Any = None) -> Any:
        existing = next((t for t in self.things.values() if t.thing_name == thing_name), None)
        if existing is None:
            return orig_create_thing(self, thing_name, thing_type_name, attribute_payload,
                                     billing_group_name)
        attrs = (attribute_payload or {}).get("attributes") or {}
        existing_type = existing.thing_type.thing_type_name if existing.thing_type else None
        if attrs == existing.attributes and (thing_type_name or None) == existing_type:
            return existing
        raise iot_exc.ResourceAlreadyExistsException(
            f"Thing {thing_name} already exists in account with different attributes",
            thing_name, existing.arn,
        )

    iot_models.IoTBackend.create_thing = create_thing

    # --- (d) ACM: requested certificates become ISSUED quickly ---------------
    # On AWS a DNS-validated certificate is issued shortly after its CNAME is
    # in place; moto keeps it PENDING_VALIDATION for MOTO_ACM_VALIDATION_WAIT
    # seconds (default 60).  The env var is read at import (int only), so we
    # set it before importing moto and also set the float here.
    moto_settings.ACM_VALIDATION_WAIT = acm_validation_wait

    apply_domain_patches(acm_validation_wait)


# Default TLS policy of new IoT domain configurations (AWS IoT).
DEFAULT_TLS_POLICY = "IoTSecurityPolicy_TLS13_1_2_2022_10"
# Seconds after RequestCertificate before ACM lists the DNS validation records.
ACM_RECORDS_DELAY = 1.0


def _dns(name: str) -> str:
    return (name or "").strip().rstrip(".").lower()


def _route53_cname_values(account_id: str, name: str) -> list[str]:
    """Values of the CNAMEs named `name` in any hosted zone of the account (any partition)."""
    from moto.route53.models import route53_backends

    out = []
    for partition_backend in list(route53_backends[account_id].values()):
        for zone in list(partition_backend.zones.values()):
            for rr in list(zone.rrsets):
                if rr.type == "CNAME" and _dns(rr.name) == _dns(name):
                    out.extend(_dns(v) for v in (rr.records or []))
    return out


def _cert_names(bundle: Any) -> set[str]:
    return {_dns(n) for n in (bundle.sans or [])} | {_dns(bundle.common_name or "")}


def _name_covered(names: set[str], host: str) -> bool:
    host = _dns(host)
    for n in names:
        if n == host:
            return True
        if n.startswith("*.") and host.count(".") == n.count(".") and host.endswith(n[1:]):
            return True
    return False


def apply_domain_patches(acm_validation_wait: float) -> None:
    """ACM, Route 53 and IoT domain configurations as AWS behaves (custom MQTT domains)."""
    from moto.acm import models as acm_models
    from moto.acm.exceptions import AWSError as AcmError
    from moto.core.responses import ActionResult
    from moto.iot import exceptions as iot_exc
    from moto.iot import models as iot_models
    from moto.iot import responses as iot_responses

    # --- (h) ACM DNS validation needs the validation CNAME ------------------
    # AWS issues a DNS-validated certificate only once its validation CNAME
    # (DomainValidationOptions[].ResourceRecord) resolves; moto issues it after
    # MOTO_ACM_VALIDATION_WAIT seconds whether or not the record exists.  Here
    # the wait counts from the moment every validation record is found in a
    # Route 53 zone of the account, so a missing record keeps the certificate
    # PENDING_VALIDATION, as on AWS.
    orig_describe = acm_models.CertBundle.describe

    def validation_records(bundle: Any) -> list[dict[str, str]]:
        desc = orig_describe(bundle)["Certificate"]
        return [o["ResourceRecord"] for o in desc.get("DomainValidationOptions", [])
                if o.get("ResourceRecord")]

    def check(self: Any) -> None:
        now = acm_models.utcnow()
        if self._not_valid_after(self._cert) <= now:
            self.status = "EXPIRED"
            return
        if self.type != "AMAZON_ISSUED" or self.status != "PENDING_VALIDATION":
            return
        account_id = self.arn.split(":")[4]
        found = all(
            _dns(r["Value"]) in _route53_cname_values(account_id, r["Name"])
            for r in validation_records(self)
        )
        if not found:
            self.validation_seen_at = None
            return
        seen = getattr(self, "validation_seen_at", None)
        if seen is None:
            self.validation_seen_at = seen = now
        if (now - seen).total_seconds() >= acm_validation_wait:
            self.status = "ISSUED"

    acm_models.CertBundle.check = check

    # --- (i) ACM publishes validation records a moment after the request ---
    # AWS: DescribeCertificate right after RequestCertificate can come back
    # without DomainValidationOptions[].ResourceRecord for a few seconds;
    # callers must poll.  moto fills them in at once.
    def describe(self: Any) -> dict[str, Any]:
        out = orig_describe(self)
        waited = (acm_models.utcnow() - self.created_at).total_seconds()
        if self.type == "AMAZON_ISSUED" and waited < ACM_RECORDS_DELAY:
            for o in out["Certificate"].get("DomainValidationOptions", []):
                o.pop("ResourceRecord", None)
        return out

    acm_models.CertBundle.describe = describe

    # --- (j) ACM RequestCertificate idempotency after a delete --------------
    # moto looks the token's certificate up without checking it still exists
    # (KeyError, HTTP 500); AWS answers a request.  Forget stale tokens.
    orig_request = acm_models.AWSCertificateManagerBackend.request_certificate

    def request_certificate(self: Any, domain_name: str, idempotency_token: str, *a: Any, **kw: Any) -> str:
        if idempotency_token is not None:
            entry = self._idempotency_tokens.get(idempotency_token)
            if entry is not None and entry["arn"] not in self._certificates:
                del self._idempotency_tokens[idempotency_token]
        return orig_request(self, domain_name, idempotency_token, *a, **kw)

    acm_models.AWSCertificateManagerBackend.request_certificate = request_certificate

    # --- (k) ACM DeleteCertificate of a certificate in use ------------------
    # AWS refuses (ResourceInUseException) while an IoT domain configuration
    # uses the certificate; moto deletes it.
    class ResourceInUse(AcmError):
        TYPE = "ResourceInUseException"

    orig_delete = acm_models.AWSCertificateManagerBackend.delete_certificate

    def delete_certificate(self: Any, arn: str) -> None:
        for region_backend in list(iot_models.iot_backends[self.account_id].values()):
            for dc in region_backend.domain_configurations.values():
                if any(sc["serverCertificateArn"] == arn for sc in dc.server_certificates):
                    raise ResourceInUse(
                        message=f"Certificate {arn} is in use by IoT domain configuration "
                        f"{dc.domain_configuration_name}."
                    )
        orig_delete(self, arn)

    acm_models.AWSCertificateManagerBackend.delete_certificate = delete_certificate

    # --- (l) IoT domain configurations -------------------------------------
    # AWS: CreateDomainConfiguration takes tlsConfig.securityPolicy (default
    # IoTSecurityPolicy_TLS13_1_2_2022_10) and UpdateDomainConfiguration can
    # change it; DescribeDomainConfiguration returns it.  The server
    # certificate must be an ISSUED ACM certificate of the account and region
    # whose names cover the domain name; the name must not start with "IoT:";
    # one configuration per domain name; serviceType defaults to DATA; and a
    # configuration must be DISABLED before it can be deleted.  moto ignores
    # tlsConfig and checks none of this.
    orig_desc_dict = iot_models.FakeDomainConfiguration.to_description_dict

    def to_description_dict(self: Any) -> dict[str, Any]:
        out = orig_desc_dict(self)
        out["tlsConfig"] = {"securityPolicy": getattr(self, "tls_policy", DEFAULT_TLS_POLICY)}
        out["serviceType"] = self.service_type or "DATA"
        return out

    iot_models.FakeDomainConfiguration.to_description_dict = to_description_dict

    def create_domain_configuration(self: Any, domain_configuration_name: str, domain_name: str,
                                    server_certificate_arns: list[str], authorizer_config: Any,
                                    service_type: str, tls_config: Any = None) -> Any:
        if (domain_configuration_name or "").startswith("IoT:"):
            raise iot_exc.InvalidRequestException(
                "Domain configuration names starting with IoT: are reserved.")
        if domain_configuration_name in self.domain_configurations:
            existing = self.domain_configurations[domain_configuration_name]
            raise iot_exc.ResourceAlreadyExistsException(
                "Domain configuration with given name already exists.",
                existing.domain_configuration_name, existing.domain_configuration_arn)
        for dc in self.domain_configurations.values():
            if domain_name and _dns(dc.domain_name) == _dns(domain_name):
                raise iot_exc.ResourceAlreadyExistsException(
                    f"Domain name {domain_name} is already used by domain configuration "
                    f"{dc.domain_configuration_name}.",
                    dc.domain_configuration_name, dc.domain_configuration_arn)
        if domain_name:
            acm = acm_models.acm_backends[self.account_id][self.region_name]
            for arn in server_certificate_arns or []:
                bundle = acm._certificates.get(arn)
                if bundle is None:
                    raise iot_exc.InvalidRequestException(
                        f"The certificate {arn} does not exist in ACM.")
                bundle.check()
                if bundle.status != "ISSUED":
                    raise iot_exc.InvalidRequestException(
                        f"The certificate {arn} is {bundle.status}, not ISSUED.")
                if not _name_covered(_cert_names(bundle), domain_name):
                    raise iot_exc.InvalidRequestException(
                        f"The certificate {arn} is not valid for {domain_name}.")
        policy = (tls_config or {}).get("securityPolicy") or DEFAULT_TLS_POLICY
        dc = iot_models.FakeDomainConfiguration(
            self.account_id, self.region_name, domain_configuration_name, domain_name,
            server_certificate_arns, "ENABLED", service_type or "DATA", authorizer_config,
            "CUSTOMER_MANAGED")
        dc.tls_policy = policy
        self.domain_configurations[domain_configuration_name] = dc
        return dc

    iot_models.IoTBackend.create_domain_configuration = create_domain_configuration

    orig_update = iot_models.IoTBackend.update_domain_configuration

    def update_domain_configuration(self: Any, domain_configuration_name: str, authorizer_config: Any,
                                    domain_configuration_status: str, remove_authorizer_config: Any,
                                    tls_config: Any = None) -> Any:
        dc = orig_update(self, domain_configuration_name, authorizer_config,
                         domain_configuration_status, remove_authorizer_config)
        if tls_config and tls_config.get("securityPolicy"):
            dc.tls_policy = tls_config["securityPolicy"]
        return dc

    iot_models.IoTBackend.update_domain_configuration = update_domain_configuration

    orig_delete_dc = iot_models.IoTBackend.delete_domain_configuration

    def delete_domain_configuration(self: Any, domain_configuration_name: str) -> None:
        dc = self.domain_configurations.get(domain_configuration_name)
        if dc is not None and dc.domain_configuration_status != "DISABLED":
            raise iot_exc.InvalidRequestException(
                f"Domain configuration {domain_configuration_name} must be DISABLED before it "
                "can be deleted.")
        orig_delete_dc(self, domain_configuration_name)

    iot_models.IoTBackend.delete_domain_configuration = delete_domain_configuration

    def resp_create(self: Any) -> Any:
        dc = self.iot_backend.create_domain_configuration(
            domain_configuration_name=self._get_param("domainConfigurationName"),
            domain_name=self._get_param("domainName"),
            server_certificate_arns=self._get_param("serverCertificateArns"),
            authorizer_config=self._get_param("authorizerConfig"),
            service_type=self._get_param("serviceType"),
            tls_config=self._get_param("tlsConfig"),
        )
        return ActionResult(dc.to_dict())

    def resp_update(self: Any) -> Any:
        dc = self.iot_backend.update_domain_configuration(
            domain_configuration_name=self._get_param("domainConfigurationName"),
            authorizer_config=self._get_param("authorizerConfig"),
            domain_configuration_status=self._get_param("domainConfigurationStatus"),
            remove_authorizer_config=self._get_bool_param("removeAuthorizerConfig"),
            tls_config=self._get_param("tlsConfig"),
        )
        return ActionResult(dc.to_dict())

    iot_responses.IoTResponse.create_domain_configuration = resp_create
    iot_responses.IoTResponse.update_domain_configuration = resp_update


def create_hosted_zones(names: list[str], region: str) -> None:
    """Public hosted zones the operator already has (`--hosted-zone`), in the default account."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.route53.models import route53_backends
    from moto.utilities.utils import get_partition

    backend = route53_backends[DEFAULT_ACCOUNT_ID][get_partition(region)]
    for name in names:
        zone = backend.create_hosted_zone(name if name.endswith(".") else f"{name}.", private_zone=False)
        log(f"hosted zone {zone.name} ({zone.id})")


# --------------------------------------------------------------------------
# API classification from botocore service models
# --------------------------------------------------------------------------

# SigV4 signing name -> botocore service model name, where they differ.  The
# recorded "service" is the model name (iot, acm, route53, iot-data, ...).
SIGNING_TO_MODEL = {"iotdata": "iot-data", "execute-api": "iot"}


class _RestOps:
    """Matches method + raw path against a REST service's requestUri templates."""

    def __init__(self, model: dict[str, Any]):
        import re

        self.by_method: dict[str, list[tuple[int, int, Any, str]]] = {}
        for name, op in model["operations"].items():
            http = op.get("http", {})
            method = http.get("method", "POST").upper()
            uri = http.get("requestUri", "/").split("?", 1)[0]
            parts = [p for p in uri.strip("/").split("/") if p] if uri.strip("/") else []
            rx, literal, greedy = [], 0, 0
            for p in parts:
                if p.startswith("{") and p.endswith("}"):
                    if p.endswith("+}"):
                        rx.append(".+")
                        greedy += 1
                    else:
                        rx.append("[^/]+")
                else:
                    # Literal segment, may also embed labels (rare).
                    seg = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(p))
                    rx.append(seg)
                    literal += len(p)
            pattern = re.compile("^/" + "/".join(rx) + "$") if rx else re.compile("^/?$")
            self.by_method.setdefault(method, []).append((literal, -greedy, pattern, name))
        for ops in self.by_method.values():
            ops.sort(key=lambda t: (t[0], t[1]), reverse=True)

    def match(self, method: str, raw_path: str) -> str | None:
        path = raw_path.rstrip("/") or "/"
        for _lit, _g, pattern, name in self.by_method.get(method.upper(), []):
            if pattern.match(path):
                return name
        return None


class ApiCatalog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, Any] = {}

    def _model(self, service: str) -> Any:
        with self._lock:
            if service in self._cache:
                return self._cache[service]
            entry: Any = None
            try:
                from botocore.loaders import Loader

                model = Loader().load_service_model(service, "service-2")
                protocol = model["metadata"].get("protocol", "")
                entry = (protocol, _RestOps(model) if protocol.startswith("rest") else None)
            except Exception as e:  # unknown service: fall back to method + path
                log(f"no botocore model for {service!r}: {e}")
            self._cache[service] = entry
            return entry

    def preload(self, services: Iterable[str]) -> None:
        for svc in services:
            self._model(svc)

    def classify(self, environ: dict[str, Any]) -> dict[str, Any]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "/")
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(path)
        raw_path = raw.split("?", 1)[0]
        if "://" in raw_path:  # absolute-form request target
            raw_path = "/" + raw_path.split("://", 1)[1].split("/", 1)[-1]
        service, region = "unknown", None
        auth = environ.get("HTTP_AUTHORIZATION", "")
        try:
            # AWS4-HMAC-SHA256 Credential=AKID/20240101/cn-northwest-1/iot/aws4_request, ...
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].strip()
            _akid, _date, region, service, _term = scope.split("/")
            service = SIGNING_TO_MODEL.get(service.lower(), service.lower())
        except (IndexError, ValueError):
            pass
        action = None
        target = environ.get("HTTP_X_AMZ_TARGET")
        entry = self._model(service) if service != "unknown" else None
        if target and "." in target:
            action = target.rsplit(".", 1)[1]  # JSON protocols (ACM)
        elif entry is not None and entry[1] is not None:
            action = entry[1].match(method, raw_path)  # REST protocols (IoT, Route 53)
        elif entry is not None and entry[0] == "query":
            qs = parse_qs(environ.get("QUERY_STRING", ""))
            action = (qs.get("Action") or [None])[0]
        return {
            "service": service,
            "region": region,
            "action": action or f"{method} {path}",
            "method": method,
            "path": path,
            "query": environ.get("QUERY_STRING", ""),
        }


def is_internal(path: str) -> bool:
    return path.startswith(INTERNAL_PREFIXES) or path in INTERNAL_PATHS


# --------------------------------------------------------------------------
# WSGI layers
# --------------------------------------------------------------------------

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def _json_response(start_response: Callable, status: str, obj: Any) -> list[bytes]:
    body = json.dumps(obj, indent=None, default=str).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


class ApiClassifier:
    """Sets environ['sandbox.api'] = {service, region, action, ...} for AWS calls."""

    def __init__(self, app: WSGIApp, catalog: ApiCatalog):
        self.app, self.catalog = app, catalog

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not is_internal(environ.get("PATH_INFO", "")):
            environ["sandbox.api"] = self.catalog.classify(environ)
        return self.app(environ, start_response)


class RequestLog:
    """Counts every AWS request (for "no AWS call was made" assertions) and
    appends one JSON line per request to DIR/requests.log."""

    def __init__(self, app: WSGIApp, log_path: str):
        self.app = app
        self.log_path = log_path
        self.lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []
        self.seq = 0

    def reset(self) -> None:
        with self.lock:
            self.entries = []

    def snapshot(self, service: str | None = None) -> dict[str, Any]:
        with self.lock:
            entries = [e for e in self.entries if service in (None, e["service"])]
        counts: dict[str, int] = {}
        for e in entries:
            k = f"{e['service']}:{e['action']}"
            counts[k] = counts.get(k, 0) + 1
        return {"total": len(entries), "counts": counts, "requests": entries}

    def _record(self, api: dict[str, Any], status: str, throttled: bool) -> None:
        with self.lock:
            self.seq += 1
            entry = {
                "seq": self.seq,
                "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                "service": api["service"],
                "action": api["action"],
                "method": api["method"],
                "path": api["path"],
                "query": api["query"],
                "region": api["region"],
                "status": int(status.split(" ", 1)[0]) if status else None,
                "throttled": throttled,
            }
            self.entries.append(entry)
            try:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")
            except OSError as e:
                log(f"cannot write {self.log_path}: {e}")

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        api = environ.get("sandbox.api")
        if api is None:
            return self.app(environ, start_response)
        recorded = []

        def sr(status: str, headers: list, exc_info: Any = None) -> Any:
            if not recorded:
                recorded.append(True)
                self._record(api, status, bool(environ.get("sandbox.throttled")))
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, sr)
        except Exception:
            if not recorded:
                recorded.append(True)
                self._record(api, "500 Internal Server Error", False)
            raise


# Emulated AWS quotas, requests/second per account+region (Route 53: per
# account, all APIs together).  Multiplied by --quota-scale.
DEFAULT_QUOTAS: dict[str, dict[str, float]] = {
    "iot": {
        "CreateThing": 100, "DescribeThing": 350, "ListThings": 10, "UpdateThing": 100,
        "DeleteThing": 100, "AttachThingPrincipal": 100, "DetachThingPrincipal": 100,
        "ListThingPrincipals": 10, "CreateKeysAndCertificate": 10,
        "CreateCertificateFromCsr": 15, "DescribeCertificate": 10, "UpdateCertificate": 10,
        "DeleteCertificate": 10, "ListCertificates": 10, "CreatePolicy": 10, "GetPolicy": 10,
        "DeletePolicy": 10, "CreatePolicyVersion": 10, "DeletePolicyVersion": 10,
        "ListPolicyVersions": 10, "ListPolicies": 10, "AttachPolicy": 15, "DetachPolicy": 15,
        "ListAttachedPolicies": 15, "ListTargetsForPolicy": 10,
    },
    "acm": {"RequestCertificate": 5, "DescribeCertificate": 10},
    "route53": {"*": 5},
}


class TokenBucket:
    def __init__(self, rate: float):
        self.rate = rate
        self.capacity = max(1.0, rate)  # burst = one second's worth
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class QuotaLayer:
    """Emulated AWS quotas: adds --latency-ms to every AWS call and, when
    --quota-scale > 0, answers ThrottlingException like AWS once a per-API
    token bucket is empty.  Off by default (scale 0, latency 0)."""

    def __init__(self, app: WSGIApp, scale: float, latency_ms: float, overrides: dict):
        self.app = app
        self.lock = threading.Lock()
        self.overrides = overrides  # {"iot": {"CreateThing": 50.0}, ...}
        self.buckets: dict[tuple, TokenBucket] = {}
        self.configure(scale=scale, latency_ms=latency_ms)

    def configure(self, scale: float | None = None, latency_ms: float | None = None) -> None:
        with self.lock:
            if scale is not None:
                self.scale = float(scale)
                self.buckets = {}
            if latency_ms is not None:
                self.latency_ms = float(latency_ms)

    def state(self) -> dict[str, Any]:
        return {"scale": self.scale, "latency_ms": self.latency_ms, "rates": self.rates()}

    def rates(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for svc in set(DEFAULT_QUOTAS) | set(self.overrides):
            merged = dict(DEFAULT_QUOTAS.get(svc, {}))
            merged.update(self.overrides.get(svc, {}))
            out[svc] = merged
        return out

    def _bucket(self, api: dict[str, Any]) -> TokenBucket | None:
        svc, action = api["service"], api["action"]
        table = dict(DEFAULT_QUOTAS.get(svc, {}))
        table.update(self.overrides.get(svc, {}))
        if action in table:
            rate, key = table[action], (svc, api["region"], action)
        elif "*" in table:
            rate, key = table["*"], (svc, "*")  # account-wide (Route 53)
        else:
            return None
        rate *= self.scale
        if rate <= 0:
            return None
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = TokenBucket(rate)
        return b

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        api = environ.get("sandbox.api")
        if api is None:
            return self.app(environ, start_response)
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000.0)
        if self.scale > 0:
            with self.lock:
                b = self._bucket(api)
                allowed = b.take() if b is not None else True
            if not allowed:
                environ["sandbox.throttled"] = True
                return self._throttled(api, start_response)
        return self.app(environ, start_response)

    @staticmethod
    def _throttled(api: dict[str, Any], start_response: Callable) -> list[bytes]:
        request_id = str(uuid.uuid4())
        if api["service"] == "route53":
            # Route 53 (rest-xml): 400, <Code>Throttling</Code>, "Rate exceeded".
            body = (
                '<?xml version="1.0"?>\n'
                '<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
                "<Error><Type>Sender</Type><Code>Throttling</Code>"
                "<Message>Rate exceeded</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>"
            ).encode()
            headers = [("Content-Type", "text/xml")]
        else:
            # IoT (restJson1) / ACM (awsJson1_1): 400 ThrottlingException.  SDKs
            # read the code from x-amzn-ErrorType first, then "__type".
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            ctype = "application/x-amz-json-1.1" if api["service"] == "acm" else "application/json"
            headers = [("Content-Type", ctype), ("x-amzn-ErrorType", "ThrottlingException")]
        headers += [("x-amzn-RequestId", request_id), ("Content-Length", str(len(body)))]
        start_response("400 Bad Request", headers)
        return [body]


class SandboxControl:
    """/_sandbox/* endpoints:
    GET  /_sandbox/health            {"ok": true, ...}
    GET  /_sandbox/requests[?service=iot]  {"total", "counts", "requests": [...]}
    POST /_sandbox/requests/reset
    GET  /_sandbox/ca                CA certificate (PEM)
    GET  /_sandbox/quota             {"scale", "latency_ms", "rates"}
    POST /_sandbox/quota             body {"scale": F, "latency_ms": N} (either optional)
    """

    def __init__(self, app: WSGIApp, *, request_log: RequestLog, quota: QuotaLayer,
                 ca: LocalCA, info: dict[str, Any]):
        self.app, self.request_log, self.quota, self.ca, self.info = app, request_log, quota, ca, info
        self.broker: Any = None  # set by main() with --broker

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not (path == "/_sandbox" or path.startswith("/_sandbox/")):
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        route = path.rstrip("/")
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        if route == "/_sandbox/health" and method == "GET":
            return _json_response(start_response, "200 OK", {"ok": True, **self.info})
        if route == "/_sandbox/requests" and method == "GET":
            svc = (qs.get("service") or [None])[0]
            return _json_response(start_response, "200 OK", self.request_log.snapshot(svc))
        if route == "/_sandbox/requests/reset" and method == "POST":
            self.request_log.reset()
            return _json_response(start_response, "200 OK", {"total": 0, "counts": {}, "requests": []})
        if route == "/_sandbox/ca" and method == "GET":
            body = self.ca.pem.encode()
            start_response("200 OK", [("Content-Type", "application/x-pem-file"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if route == "/_sandbox/quota" and method == "GET":
            return _json_response(start_response, "200 OK", self.quota.state())
        if route == "/_sandbox/quota" and method == "POST":
            try:
                n = int(environ.get("CONTENT_LENGTH") or 0)
                req = json.loads(environ["wsgi.input"].read(n) or b"{}")
                self.quota.configure(scale=req.get("scale"), latency_ms=req.get("latency_ms"))
            except Exception as e:
                return _json_response(start_response, "400 Bad Request", {"error": str(e)})
            return _json_response(start_response, "200 OK", self.quota.state())
        if route.startswith("/_sandbox/broker") and self.broker is not None:
            # GET /_sandbox/broker: host, port, resolve, ca_file, running, decisions;
            # POST /_sandbox/broker/stop | /start: take the broker down or up (tests of outages).
            if route == "/_sandbox/broker/stop" and method == "POST":
                self.broker.stop_process()
            elif route == "/_sandbox/broker/start" and method == "POST":
                self.broker.start()
            elif not (route == "/_sandbox/broker" and method == "GET"):
                return _json_response(start_response, "404 Not Found", {"error": f"no route {method} {path}"})
            with self.broker.authorizer.lock:
                decisions = list(self.broker.authorizer.decisions)
            return _json_response(start_response, "200 OK", {**self.broker.info(), "decisions": decisions})
        return _json_response(start_response, "404 Not Found", {"error": f"no route {method} {path}"})


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_quota_overrides(items: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for item in items:
        try:
            lhs, rps = item.split("=", 1)
            svc, action = lhs.split(":", 1)
            out.setdefault(svc.lower(), {})[action] = float(rps)
        except ValueError:
            raise SystemExit(f"--quota expects SERVICE:ACTION=RPS (e.g. iot:CreateThing=50), got {item!r}")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="provision local AWS sandbox (patched moto server)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--state-dir", default=".sandbox", help="created if missing")
    p.add_argument("--ca-dir", default=None, help="CA dir (default STATE_DIR/ca); share it across state dirs")
    p.add_argument("--acm-validation-wait", type=float, default=2.0,
                   help="seconds before a requested ACM certificate is ISSUED (default 2)")
    p.add_argument("--quota-scale", type=float, default=0.0,
                   help="multiply the emulated AWS per-API rates; 0 = quotas off (default)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added latency per AWS call")
    p.add_argument("--quota", action="append", default=[], metavar="SERVICE:ACTION=RPS",
                   help="override/add a base rate (before scaling); ACTION '*' = service-wide")
    # The MQTT broker (scripts/sandbox_broker.py): mosquitto authorizing like AWS IoT Core.
    p.add_argument("--broker", action="store_true",
                   help="also run an AWS IoT-like MQTT broker (mosquitto, TLS, policy-enforcing)")
    p.add_argument("--broker-port", type=int, default=0, help="broker TLS port; 0 = a free port")
    p.add_argument("--broker-region", default=os.environ.get("AWS_REGION") or "cn-northwest-1",
                   help="region whose ATS endpoint host name the broker serves (default AWS_REGION "
                        "or cn-northwest-1)")
    p.add_argument("--broker-name", action="append", default=[], metavar="HOST",
                   help="extra host name on the broker's server certificate (e.g. a custom domain)")
    p.add_argument("--hosted-zone", action="append", default=[], metavar="NAME",
                   help="create this public Route 53 hosted zone at start (as the operator has it)")
    p.add_argument("--region", default=os.environ.get("AWS_REGION") or "cn-northwest-1",
                   help="region (so partition) the --hosted-zone zones are created for")
    return p.parse_args(argv)


def build_app(moto_app: WSGIApp, *, state_dir: str, ca: LocalCA, args: argparse.Namespace,
              info: dict[str, Any]) -> tuple[WSGIApp, RequestLog, QuotaLayer]:
    quota = QuotaLayer(moto_app, args.quota_scale, args.latency_ms,
                       parse_quota_overrides(args.quota))
    request_log = RequestLog(quota, os.path.join(state_dir, "requests.log"))
    catalog = ApiCatalog()
    catalog.preload(["iot", "acm", "route53"])  # fail/slow at start, not on first call
    classified = ApiClassifier(request_log, catalog)
    app = SandboxControl(classified, request_log=request_log, quota=quota, ca=ca, info=info)
    return app, request_log, quota


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    ca_dir = os.path.abspath(args.ca_dir) if args.ca_dir else os.path.join(state_dir, "ca")

    # Environment moto reads at import time.
    os.environ["MOTO_ACM_VALIDATION_WAIT"] = str(int(math.ceil(args.acm_validation_wait)))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    from werkzeug.serving import make_server

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    ca = LocalCA.load_or_create(ca_dir)
    apply_moto_patches(ca, args.acm_validation_wait)
    create_hosted_zones(args.hosted_zone, args.region)

    moto_app = DomainDispatcherApplication(create_backend_app)
    info: dict[str, Any] = {"state_dir": state_dir, "ca_pem": ca.pem_path, "pid": os.getpid()}
    app, _request_log, _quota = build_app(moto_app, state_dir=state_dir, ca=ca, args=args, info=info)

    server = make_server(args.host, args.port, app, threaded=True,
                         request_handler=MotoRequestHandler)
    port = server.server_port
    os.environ["MOTO_PORT"] = str(port)  # moto builds some self-URLs from it
    url = f"http://{args.host}:{port}"
    info["url"] = url

    broker = None
    if args.broker:
        from moto.core import DEFAULT_ACCOUNT_ID
        from sandbox_broker import Broker

        host = endpoint_address(DEFAULT_ACCOUNT_ID, args.broker_region, "iot:Data-ATS")
        cache = os.path.join(os.environ.get("PROVISION_CACHE_DIR") or
                             os.path.join(os.path.expanduser("~"), ".cache", "provision"), "broker")
        broker = Broker(state_dir=state_dir, cache_dir=cache, ca=ca, host_names=[host, *args.broker_name],
                        port=args.broker_port, bind=args.host)
        broker.start()
        app.broker = broker
        info["broker"] = broker.info()

    def on_signal(signum: int, _frame: Any) -> None:
        log(f"signal {signum}: shutting down")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    log(f"state dir {state_dir}; CA {ca.pem_path}; ACM validation wait "
        f"{args.acm_validation_wait}s; quota scale {args.quota_scale}; latency {args.latency_ms} ms")
    sys.stdout.write(f"READY {url}\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if broker is not None:
            broker.stop()
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
