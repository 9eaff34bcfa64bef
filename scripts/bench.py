#!/usr/bin/env python3
"""Batch-onboarding benchmark for provision (issue 5): measured against the sandbox behind an
emulated AWS quota layer (per-API token buckets answering ThrottlingException, plus a per-call
latency like AWS's as seen from a client).

Prints, for N new stations:
  1. provision apply: wall time, the floor its calls imply at the emulated quotas, the ratio;
  2. provision plan of the converged fleet (the CI drift check): the same, plus calls per station;
  3. the same work done the way users do it today (a sequential boto3 script) and its ratio;
  4. throttling answers seen and failed stations.

The floor of a run is the largest, over all APIs, of (successful calls to that API / its rate).
Run: scripts/bench [--stations 200] [--quota-scale 0.75] [--latency-ms 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def http(url: str, method: str = "GET") -> dict:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req) as r:
        body = r.read()
    try:
        return json.loads(body)
    except ValueError:
        return {}


class Sandbox:
    def __init__(self, scale: float, latency_ms: float):
        self.dir = tempfile.mkdtemp(prefix="provision-bench-")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts/sandbox.py"), "--port", "0", "--state-dir", self.dir,
             "--quota-scale", str(scale), "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            raise SystemExit(f"bench: the sandbox did not start: {line!r}")
        self.url = line.split(" ", 1)[1]
        self.quota = http(self.url + "/_sandbox/quota")

    def reset(self) -> None:
        http(self.url + "/moto-api/reset", "POST")
        http(self.url + "/_sandbox/requests/reset", "POST")

    def requests(self) -> list[dict]:
        return http(self.url + "/_sandbox/requests")["requests"]

    def floor(self, requests: list[dict]) -> tuple[float, dict, int]:
        """(floor seconds, successful calls per API, throttled answers)."""
        scale = self.quota["scale"]
        rates = self.quota["rates"]
        calls: dict[tuple[str, str], int] = {}
        throttled = 0
        for r in requests:
            if r.get("throttled"):
                throttled += 1
                continue
            key = (r["service"], r["action"])
            calls[key] = calls.get(key, 0) + 1
        floor = 0.0
        route53 = 0
        for (svc, action), n in calls.items():
            table = rates.get(svc, {})
            if action in table:
                floor = max(floor, n / (table[action] * scale))
            elif "*" in table:
                route53 += n
        if route53:
            floor = max(floor, route53 / (rates["route53"]["*"] * scale))
        return floor, {f"{s}:{a}": n for (s, a), n in sorted(calls.items())}, throttled

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def fleet(n: int) -> Path:
    d = Path(tempfile.mkdtemp(prefix="provision-bench-fleet-"))
    shutil.copytree(ROOT / "templates", d / "templates")
    text = (ROOT / "stations.yaml").read_text().split("stations:")[0]
    text += "stations:\n" + "".join(f"  - id: st{i:05d}\n" for i in range(n))
    (d / "stations.yaml").write_text(text)
    return d


def run(binary: str, sb: Sandbox, cwd: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, AWS_ENDPOINT_URL=sb.url, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="cn-northwest-1", NO_COLOR="1",
               AWS_EC2_METADATA_DISABLED="true")
    env.pop("AWS_PROFILE", None)
    t0 = time.monotonic()
    p = subprocess.run([binary, *args], cwd=cwd, env=env, capture_output=True, text=True)
    return time.monotonic() - t0, p


def baseline(sb: Sandbox, n: int) -> tuple[float, float, int]:
    """The way users do it today: one call after another with boto3 (its default retries)."""
    import boto3

    iot = boto3.client("iot", endpoint_url=sb.url, region_name="cn-northwest-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = "arn:aws-cn:iot:cn-northwest-1:123456789012"
    failed = 0
    t0 = time.monotonic()
    for i in range(n):
        sid = f"st{i:05d}"
        try:
            iot.create_thing(thingName=sid)
            cert = iot.create_keys_and_certificate(setAsActive=True)
            doc = {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/{sid}"},
                {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{arn}:topic/device/station/up/{sid}"},
                {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{arn}:topicfilter/device/station/down/{sid}"},
                {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{arn}:topic/device/station/down/{sid}"}]}
            iot.create_policy(policyName=f"bench-{sid}", policyDocument=json.dumps(doc))
            iot.attach_policy(policyName=f"bench-{sid}", target=cert["certificateArn"])
            iot.attach_thing_principal(thingName=sid, principal=cert["certificateArn"])
        except Exception:  # noqa: BLE001 - counted, as a user's script would fail the station
            failed += 1
    apply_s = time.monotonic() - t0
    t0 = time.monotonic()
    for i in range(n):
        sid = f"st{i:05d}"
        try:
            iot.describe_thing(thingName=sid)
            for p in iot.list_thing_principals(thingName=sid)["principals"]:
                iot.list_attached_policies(target=p)
            iot.get_policy(policyName=f"bench-{sid}")
        except Exception:  # noqa: BLE001
            failed += 1
    return apply_s, time.monotonic() - t0, failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, default=200)
    ap.add_argument("--quota-scale", type=float, default=0.75)
    ap.add_argument("--latency-ms", type=float, default=60.0)
    ap.add_argument("--binary", default=None, help="provision binary (default: the debug build)")
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache/provision/target")
    binary = args.binary or str(Path(target) / "debug/provision")
    n = args.stations

    sb = Sandbox(args.quota_scale, args.latency_ms)
    d = fleet(n)
    try:
        print(f"provision batch benchmark: {n} stations (+ the platform) against the sandbox")
        print(f"emulation: AWS default quotas x {args.quota_scale} (scaled down so that the emulator's own"
              f" speed is not what is measured), {args.latency_ms:.0f} ms per call;"
              f" provision runs with --rate-scale {args.quota_scale}")
        rate = ["--rate-scale", str(args.quota_scale)]

        sb.reset()
        t_apply, p = run(binary, sb, d, "apply", "--auto-approve", *rate)
        reqs = sb.requests()
        f_apply, calls_apply, thr_apply = sb.floor(reqs)
        ok_apply = p.returncode == 0
        failed_line = [l for l in p.stderr.splitlines() if l.startswith("Stations:")]
        if not ok_apply:
            print(p.stdout[-2000:], p.stderr[-4000:], file=sys.stderr)

        sb.requests()
        http(sb.url + "/_sandbox/requests/reset", "POST")
        t_plan, p2 = run(binary, sb, d, "plan", "--detailed-exitcode", *rate)
        f_plan, calls_plan, thr_plan = sb.floor(sb.requests())
        converged = p2.returncode == 0
        plan_calls = sum(calls_plan.values())

        print()
        print(f"{'run':<34} {'wall':>8} {'floor':>8} {'ratio':>6}  notes")
        print(f"{'provision apply (new stations)':<34} {t_apply:>7.1f}s {f_apply:>7.1f}s {t_apply / f_apply:>5.2f}x"
              f"  exit {p.returncode}; {failed_line[0] if failed_line else ''}")
        print(f"{'provision plan (converged, drift)':<34} {t_plan:>7.1f}s {f_plan:>7.1f}s {t_plan / f_plan:>5.2f}x"
              f"  exit {p2.returncode} ({'no changes' if converged else 'NOT converged'});"
              f" {plan_calls} calls, {plan_calls / (n + 1):.2f} per station")
        print(f"throttling answers seen: apply {thr_apply}, plan {thr_plan} (retried, never fatal)")
        print(f"failed stations: {0 if ok_apply and converged else 'see errors above'}")
        print("apply calls by API:", ", ".join(f"{k.split(':')[1]} {v}" for k, v in calls_apply.items()))
        print("plan calls by API:", ", ".join(f"{k.split(':')[1]} {v}" for k, v in calls_plan.items()))

        if not args.skip_baseline:
            sb.reset()
            b_apply, b_plan, b_failed = baseline(sb, n)
            print()
            print(f"{'sequential boto3 (users today)':<34} {'wall':>8} {'vs provision':>13}")
            print(f"{'  apply: 5 calls per station':<34} {b_apply:>7.1f}s {b_apply / t_apply:>12.2f}x")
            print(f"{'  drift check: 4 calls per station':<34} {b_plan:>7.1f}s {b_plan / t_plan:>12.2f}x")
            print(f"  failed stations in the sequential script: {b_failed}")
        return 0 if ok_apply and converged else 1
    finally:
        sb.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
