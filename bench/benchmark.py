"""The benchmark suite (issue: performance). Drives the release Lambda binary
over the Lambda Runtime API against the local bench and writes
bench/out/benchmark.json, the chart docs/sweep-scaling.svg, and the tables
for BENCHMARKS.md on stdout.

    python bench/benchmark.py                 # full run (release binaries)
    python bench/benchmark.py --smoke         # CI: few repetitions, small fleets

Measures: Init (process start -> first poll for an event) and peak RSS,
against a hello-world lambda_runtime function with the same profile; first
and warm invocation times; AWS calls per event kind (through a counting
proxy), with any call made twice in one pass; sweep wall time, calls and
peak RSS for fleets of instances with injected per-call latency; and the
Connect call rate at the default CONNECT_API_RPS; and (part `tls`) the
cold path over HTTPS: the guard and a floor that makes one HTTPS call with
the same TLS stack, each trusting a throwaway CA through a certificate
directory shaped like Lambda's Amazon Linux 2023 (bench/tls_front.py).
Every run also reports the guard binary's size and its Lambda zip's.
Part `central` (issue 15): a scheduled sweep in central mode fanned out over
1 to 20 member accounts x 2 Regions on the FIFO work queue, drained by
several function processes as Lambda's SQS event source does; its wall time
against the number of accounts (a text chart) and the Connect calls per
second of each account and Region.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

from conftest import OUT, REPO, sample_event
from fault_proxy import FaultProxy
from local_aws import ACCOUNT, REGION, LocalAws, http_json
from runtime_api import FifoEventSource, LambdaFunction
from tls_front import TlsBench
from scenarios import (CTR_STREAM, MEMBER_ROLE_NAME, SCENARIOS, TOPIC_ARN, Spec, create_role, event_for, instance,
                       role_arn, seed, seed_place, spec_for, subscribe_queue)

# The fewest AWS calls each event kind can make on the healthy one-instance
# account (a CMK domain, a CMK-encrypted S3 store, a Kinesis CTR stream, one
# inline policy): every call feeds a rule (BENCHMARKS.md explains each).
MINIMAL_CALLS = {
    "instance (Connect event)": 27,
    "role (IAM event)": 27,
    "domain (Customer Profiles event)": 27,
    "key (KMS event)": 27,
    "sweep (schedule)": 28,
}

EVENT_KINDS = {
    "instance (Connect event)": "connect-update-instance-storage-config.json",
    "role (IAM event)": "iam-put-role-policy.json",
    "domain (Customer Profiles event)": "profiles-update-domain.json",
    "key (KMS event)": "kms-revoke-grant.json",
    "sweep (schedule)": "scheduled-sweep.json",
}


def peak_rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def made_twice(calls):
    """Calls identical to an earlier one in the same pass (operation and request)."""
    return len(calls) - len(set(calls))


def median(values):
    return statistics.median(values) if values else float("nan")


class Bench:
    def __init__(self, bin_dir, hello, hello_https=None):
        self.bin_dir = Path(bin_dir)
        self.hello = hello
        self.hello_https = hello_https
        self.aws = LocalAws(log_dir=OUT)
        self.proxy = FaultProxy(self.aws.moto_url, self.aws.double_url)

    def env(self, rps="1000"):
        return {**self.aws.sdk_env(via=self.proxy.url), "ALERT_TOPIC_ARN": TOPIC_ARN, "CONNECT_API_RPS": rps}

    def start(self, binary, rps="1000", **extra_env):
        fn = LambdaFunction(str(binary), {**self.env(rps), **extra_env})
        init = fn.wait_ready()
        return fn, init

    def timed(self, fn, event, timeout_s=900):
        started = time.monotonic()
        ok, body = fn.invoke(event, timeout_s=timeout_s)
        if not ok:
            raise RuntimeError(f"invocation failed: {body}")
        return (time.monotonic() - started) * 1000, body

    def healthy(self):
        self.aws.reset()
        self.proxy.set({})
        return seed(self.aws, spec_for("healthy"))

    def cold_starts(self, runs):
        seeded = self.healthy()
        targeted = event_for(SCENARIOS["healthy"], seeded, sample_event("kms-revoke-grant.json"))
        sweep = json.loads(sample_event("scheduled-sweep.json"))
        rows = {"guard": Counter(), "hello": Counter()}
        samples = {k: {"init_ms": [], "rss_after_init_mb": [], "first_ms": [], "warm_targeted_ms": [],
                       "warm_sweep_ms": [], "peak_rss_mb": []} for k in rows}
        for _ in range(runs):
            fn, init = self.start(self.hello)
            samples["hello"]["init_ms"].append(init * 1000)
            samples["hello"]["rss_after_init_mb"].append(peak_rss_mb(fn.process.pid))
            ms, _ = self.timed(fn, {"hello": "world"})
            samples["hello"]["first_ms"].append(ms)
            samples["hello"]["peak_rss_mb"].append(peak_rss_mb(fn.process.pid))
            fn.close()
            fn, init = self.start(self.bin_dir / "connect-slr-guard-lambda")
            s = samples["guard"]
            s["init_ms"].append(init * 1000)
            s["rss_after_init_mb"].append(peak_rss_mb(fn.process.pid))
            s["first_ms"].append(self.timed(fn, targeted)[0])
            s["warm_targeted_ms"].extend(self.timed(fn, targeted)[0] for _ in range(3))
            s["warm_sweep_ms"].extend(self.timed(fn, sweep)[0] for _ in range(2))
            s["peak_rss_mb"].append(peak_rss_mb(fn.process.pid))
            fn.close()
        return {k: {m: round(median(v), 2) for m, v in s.items() if v} | {"runs": runs} for k, s in samples.items()}

    def calls_per_event_kind(self):
        seeded = self.healthy()
        fn, _ = self.start(self.bin_dir / "connect-slr-guard-lambda")
        result = {}
        try:
            for kind, file in EVENT_KINDS.items():
                event = event_for(SCENARIOS["healthy"], seeded, sample_event(file))
                self.proxy.set({})
                _, body = self.timed(fn, event)
                calls = list(self.proxy.calls)
                twice = made_twice(calls)
                per_op = Counter(f"{svc}:{op}" for svc, op, _ in calls)
                result[kind] = {"event": file, "calls": len(calls), "made_twice": twice,
                                "by_operation": dict(sorted(per_op.items())),
                                "instances_checked": body.get("instances_checked")}
        finally:
            fn.close()
        return result

    def unused_key_event(self):
        """Calls of a KMS event about a customer managed key no instance uses:
        stateless, and under a ledger once a sweep has built the key index."""
        seeded = self.healthy()
        unused = self.aws.client("kms").create_key(Description="not Connect's")["KeyMetadata"]["KeyId"]
        event = event_for(SCENARIOS["healthy"], seeded, sample_event("kms-revoke-grant.json"))
        event["detail"]["requestParameters"]["keyId"] = unused
        table = "bench-ledger"
        self.aws.client("dynamodb").create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        result = {}
        for mode, extra in [("stateless", {}), ("ledger, after a sweep", {"LEDGER_TABLE": table})]:
            fn, _ = self.start(self.bin_dir / "connect-slr-guard-lambda", **extra)
            try:
                if extra:
                    self.timed(fn, json.loads(sample_event("scheduled-sweep.json")))
                self.proxy.set({})
                self.timed(fn, event)
                calls = list(self.proxy.calls)
            finally:
                fn.close()
            result[mode] = {"connect_calls": sum(1 for c in calls if c[0] == "connect"),
                            "aws_calls": len(calls),
                            "by_operation": dict(sorted(Counter(f"{s}:{o}" for s, o, _ in calls).items()))}
        return result

    def seed_fleet(self, n):
        """n ACTIVE instances, each with its own healthy SLR and a Kinesis CTR stream."""
        self.aws.reset()
        self.proxy.set({})
        iam = self.aws.client("iam")
        instances, storage = [], {}
        for i in range(n):
            iid = f"{i:08d}-0000-4000-8000-000000000000"
            name = f"AWSServiceRoleForAmazonConnect_Fleet{i:05d}"
            create_role(iam, Spec(), name)
            instances.append(instance(iid, f"fleet-{i}", role_arn(name)))
            storage[iid] = {"CONTACT_TRACE_RECORDS": [CTR_STREAM]}
        subscribe_queue(self.aws)
        http_json("PUT", f"{self.aws.double_url}/_double/state", {"instances": instances, "storage_configs": storage})

    def sweep_scaling(self, sizes, latency_ms):
        sweep = json.loads(sample_event("scheduled-sweep.json"))
        rows = []
        for n in sizes:
            self.seed_fleet(n)
            fn, _ = self.start(self.bin_dir / "connect-slr-guard-lambda")
            try:
                self.proxy.set({"*": {"mode": "slow", "delay_ms": latency_ms}})
                ms, body = self.timed(fn, sweep)
                calls = list(self.proxy.calls)
                rows.append({"instances": n, "wall_s": round(ms / 1000, 2), "calls": len(calls),
                             "connect_calls": sum(1 for c in calls if c[0] == "connect"),
                             "made_twice": made_twice(calls),
                             "peak_rss_mb": round(peak_rss_mb(fn.process.pid), 1),
                             "findings": len(body["findings"]), "instances_checked": body["instances_checked"]})
                print(f"  sweep of {n}: {rows[-1]}", file=sys.stderr)
            finally:
                self.proxy.set({})
                fn.close()
        return rows

    def pacing(self, n, rps):
        """A sweep of n instances at CONNECT_API_RPS=rps (each Connect API its own bucket, burst 5):
        per API, the calls, the longest a token bucket at rps/burst would let them take, and whether they
        ever went faster than that bucket; and the sweep's time against its quota-bound limit (the API
        with the most calls, at its rate after its burst)."""
        self.seed_fleet(n)
        fn, _ = self.start(self.bin_dir / "connect-slr-guard-lambda", rps=str(rps))
        try:
            self.proxy.set({})
            ms, _ = self.timed(fn, json.loads(sample_event("scheduled-sweep.json")))
            times = [(op, t) for service, op, t in self.proxy.call_times if service == "connect"]
        finally:
            fn.close()
        apis = {}
        for op in sorted({op for op, _ in times}):
            stamps = sorted(t for o, t in times if o == op)
            apis[op] = {"calls": len(stamps), "over_bucket": bucket_overruns(stamps, rps, CONNECT_BURST),
                        "calls_per_s_after_burst": round(max(len(stamps) - CONNECT_BURST, 0)
                                                         / max(stamps[-1] - stamps[0], 1e-9), 2)}
        limit_s = max(max(a["calls"] - CONNECT_BURST, 0) / rps for a in apis.values())
        return {"instances": n, "rps": rps, "wall_s": round(ms / 1000, 2), "quota_bound_s": round(limit_s, 2),
                "ratio_to_limit": round(ms / 1000 / limit_s, 2) if limit_s else None, "apis": apis}

    def tls_cold_path(self, runs):
        """Each of the guard and the floor started `runs` times (alternating) against the HTTPS front, trusting
        its throwaway CA through the AL2023-shaped cert dir: Init, the first invocation (the guard: the targeted
        KMS event on the healthy account, all of its AWS calls over TLS; the floor: its one HTTPS GET, to the
        fault proxy's own counts page, so no emulator time), their sum per start, a second identical guard
        invocation (connections pooled by then) and the first's excess over it per start (the emulators' time
        cancels out: what is left is the first call's own cold cost), peak RSS, and what the front saw. Each
        service has its own port on the front, so the guard opens (at least) one TLS connection per service,
        as against AWS's per-service hosts."""
        seeded = self.healthy()
        targeted = event_for(SCENARIOS["healthy"], seeded, sample_event("kms-revoke-grant.json"))
        keys = ("init_ms", "first_ms", "total_ms", "rss_after_init_mb", "peak_rss_mb", "tls_handshakes",
                "handshake_failures", "aws_calls", "findings", "second_ms", "first_minus_second_ms")
        samples = {k: {m: [] for m in keys} for k in ("guard", "hello")}
        statuses = set()
        with TlsBench(self.proxy.url) as tls:
            guard_env = {**tls.sdk_env(self.aws), "ALERT_TOPIC_ARN": TOPIC_ARN, "CONNECT_API_RPS": "1000"}
            hello_env = {**tls.cert_dir.env, "HELLO_HTTPS_URL": f"{tls.front.url}/_faults/counts"}
            for _ in range(runs):
                for name, binary, env, event in [("hello", self.hello_https, hello_env, {"hello": "world"}),
                                                 ("guard", self.bin_dir / "connect-slr-guard-lambda", guard_env,
                                                  targeted)]:
                    s = samples[name]
                    self.proxy.set({})
                    tls.front.reset_stats()
                    fn = LambdaFunction(str(binary), env)
                    try:
                        init = fn.wait_ready() * 1000
                        s["rss_after_init_mb"].append(peak_rss_mb(fn.process.pid))
                        first, body = self.timed(fn, event)
                        s["peak_rss_mb"].append(peak_rss_mb(fn.process.pid))
                        front = tls.front.stats()
                        s["init_ms"].append(init)
                        s["first_ms"].append(first)
                        s["total_ms"].append(init + first)
                        s["tls_handshakes"].append(front["handshakes"])
                        s["handshake_failures"].append(len(front["handshake_failures"]))
                        s["aws_calls"].append(len(self.proxy.calls))
                        if name == "guard":
                            s["findings"].append(len(body["findings"]))
                            second = self.timed(fn, targeted)[0]
                            s["second_ms"].append(second)
                            s["first_minus_second_ms"].append(first - second)
                        else:
                            statuses.add(body.get("https_status"))
                    finally:
                        fn.close()
            versions = tls.front.stats()["versions"]
            # The floor verifies as the guard does: a certificate from a CA the directory lacks is refused.
            rogue = tls.rogue_front()
            fn = LambdaFunction(str(self.hello_https), {**hello_env, "HELLO_HTTPS_URL": f"{rogue.url}/_faults/counts"})
            try:
                fn.wait_ready()
                ok, body = fn.invoke({"hello": "world"}, timeout_s=60)
            finally:
                fn.close()
            floor_refuses = not ok and "UnknownIssuer" in json.dumps(body) and rogue.stats()["handshakes"] == 0
        out = {"runs": runs, "bundle_certs": tls.cert_dir.cert_count, "floor_https_status": sorted(statuses, key=str),
               "floor_refuses_untrusted": floor_refuses, "guard_tls": versions}
        for name, s in samples.items():
            out[name] = {m: round(median(v), 2) for m, v in s.items() if v}
            out[name] |= {f"{m}_min": min(s[m]) for m in ("tls_handshakes", "aws_calls", "findings") if s[m]}
            out[name] |= {f"{m}_max": max(s[m]) for m in ("handshake_failures", "findings") if s[m]}
        return out

    def central(self, account_counts, rps, concurrency, instances=1):
        # concurrency "places": one function per account and Region, as Lambda scales out on a FIFO queue
        """Central mode (issue 15): for each n in `account_counts`, a scheduled sweep over n member accounts x
        CENTRAL_REGIONS, `instances` healthy instances in each account and Region. The function fans the sweep
        out on the FIFO work queue, one part per account and Region in its own message group, and `concurrency`
        function processes drain it as Lambda's SQS event source does (BatchSize 1; SQS keeps each group to one
        message in flight). Per run: the drain's wall time against its quota-bound limit (rounds of
        `concurrency` places, each the time its storage reads take at `rps` after the burst), the Connect calls,
        each account and Region's Connect calls per second (per API after its burst, the quota's measure; and all
        of them over the part), and how often any went faster than its bucket."""
        rows = []
        for n in account_counts:
            self.aws.reset()
            self.proxy.set({})
            accounts = central_members(n)
            for account in accounts:
                for region in CENTRAL_REGIONS:
                    seed_place(self.aws, account, region, instances=instances)
            oncall = subscribe_queue(self.aws)
            sqs = self.aws.client("sqs")
            work = sqs.create_queue(QueueName="guard-work.fifo", Attributes={
                "FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "960"})["QueueUrl"]
            source = FifoEventSource(sqs, work, REGION)
            env = {"MEMBER_ROLE_NAME": MEMBER_ROLE_NAME, "MEMBER_ACCOUNTS": ",".join(accounts),
                   "SWEEP_REGIONS": ",".join(CENTRAL_REGIONS), "WORK_QUEUE_URL": work}
            places = n * len(CENTRAL_REGIONS)
            processes = places if concurrency == "places" else concurrency
            # Straight to moto and the double, not through the proxy: one Python hop less between the guard's
            # request and the double's time stamp, which the quota check reads.
            env = {**self.aws.sdk_env(), "ALERT_TOPIC_ARN": TOPIC_ARN, "CONNECT_API_RPS": str(rps), **env}
            functions = []
            for _ in range(processes):
                functions.append(LambdaFunction(str(self.bin_dir / "connect-slr-guard-lambda"), env))
                functions[-1].wait_ready()
            try:
                self.aws.double_calls(clear=True)
                sweep = json.loads(sample_event("scheduled-sweep.json"))
                sqs.send_message(QueueUrl=work, MessageBody=json.dumps(sweep), MessageGroupId=f"{ACCOUNT}:{REGION}")
                started = time.monotonic()
                deliveries = source.drain(functions, timeout_s=900)
                # To the last part's end: the pollers' own winding down is not the sweep's.
                wall_s = max(d["finished"] for d in deliveries) - started
            finally:
                for fn in functions:
                    fn.close()
            calls = [c for c in self.aws.double_calls() if c["operation"] in CONNECT_APIS]
            parts = [d for d in deliveries if d["body"].get("schema") == "connect-slr-guard/sweep/v1"]
            part_s = {(d["body"]["account"], d["body"]["region"]): d["finished"] - d["started"] for d in parts}
            by_place_api, by_place = {}, Counter()
            for c in calls:
                by_place_api.setdefault((c["account"], c["region"], c["operation"]), []).append(c["time"])
                by_place[(c["account"], c["region"])] += 1
            after_burst = [(len(t) - CONNECT_BURST) / (max(t) - min(t)) for t in by_place_api.values()
                           if len(t) > CONNECT_BURST and max(t) > min(t)]
            place_bound_s = max(STORAGE_CALLS_PER_INSTANCE * instances - CONNECT_BURST, 0) / rps
            bound_s = math.ceil(places / processes) * place_bound_s
            rows.append({
                "accounts": n, "regions": len(CENTRAL_REGIONS), "places": places, "instances_per_place": instances,
                "concurrency": concurrency, "functions": processes, "rps": rps,
                "messages": len(deliveries), "parts": len(parts),
                "wall_s": round(wall_s, 2), "quota_bound_s": round(bound_s, 2),
                "ratio_to_limit": round(wall_s / bound_s, 2) if bound_s else None,
                "connect_calls": len(calls),
                "places_read": len(by_place),
                "list_instances_max_per_place": max((len(t) for (_, _, op), t in by_place_api.items()
                                                     if op == "ListInstances"), default=0),
                "place_api_rps_median": round(median(after_burst), 2),
                "place_api_rps_max": round(max(after_burst, default=float("nan")), 2),
                "place_calls_per_s_median": round(median([by_place[p] / s for p, s in part_s.items() if s > 0]), 2),
                "place_part_s_median": round(median(list(part_s.values())), 2),
                "place_part_s_max": round(max(part_s.values(), default=float("nan")), 2),
                "fan_out_s": round(deliveries[0]["finished"] - deliveries[0]["started"], 2),
                "last_part_started_s": round(max((d["started"] for d in parts), default=started) - started, 2),
                "org_calls_per_s": round(len(calls) / wall_s, 2),
                "over_bucket": sum(bucket_overruns(sorted(t), rps, CONNECT_BURST) for t in by_place_api.values()),
                "alerts": len(drain_queue(sqs, oncall)),
            })
            print(f"  central, {n} accounts, {processes} functions: {rows[-1]}", file=sys.stderr)
        return rows

    def close(self):
        self.proxy.close()
        self.aws.close()


CONNECT_BURST = 5
DEFAULT_CONNECT_RPS = 2
CONNECT_APIS = ("ListInstances", "DescribeInstance", "ListInstanceStorageConfigs")
STORAGE_CALLS_PER_INSTANCE = 13  # one ListInstanceStorageConfigs per storage resource type
CENTRAL_REGIONS = (REGION, "eu-west-1")


def central_members(n):
    """n member account ids, none the central account."""
    return [str(444400000000 + 1111 * k) for k in range(1, n + 1)]


def drain_queue(sqs, url):
    """Every message on a queue (deleted)."""
    out = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []):
        for m in batch:
            out.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out


def concurrency_label(concurrency):
    return "one function per account and Region" if concurrency == "places" else f"{concurrency} functions"


def central_chart(rows, width=40):
    """Sweep wall time against the number of accounts, one series per concurrency, as a text chart."""
    top = max(r["wall_s"] for r in rows) or 1
    r0 = rows[0]
    lines = [f"central sweep: drain wall time (CONNECT_API_RPS={r0['rps']:g}, {r0['instances_per_place']} instance "
             f"per account and Region, {r0['regions']} Regions)"]
    for concurrency in dict.fromkeys(r["concurrency"] for r in rows):
        lines.append(f"{concurrency_label(concurrency)}:")
        for r in (r for r in rows if r["concurrency"] == concurrency):
            bar = "#" * max(1, round(r["wall_s"] / top * width))
            lines.append(f"{r['accounts']:>4} accounts |{bar:<{width}}| {r['wall_s']:6.1f} s ({r['places']} parts)")
    return "\n".join(lines)
# A request is stamped when the proxy reads it, up to this long after the guard
# took its slot: that delay can bunch stamps by at most rps x this, once.
STAMP_SLACK_S = 0.05


def bucket_overruns(stamps, rps, burst):
    """Requests a token bucket (rps, burst, full at the first request) would have refused,
    allowing for the stamping delay."""
    capacity = burst + rps * STAMP_SLACK_S
    tokens, last, over = capacity, stamps[0] if stamps else 0.0, 0
    for t in stamps:
        tokens = min(capacity, tokens + (t - last) * rps)
        last = t
        if tokens < 1 - 1e-9:
            over += 1
        else:
            tokens -= 1
    return over


def svg_chart(rows, path):
    """Sweep wall time and call count against instance count (log x), as SVG."""
    w, h, pad = 640, 360, 60
    xs = [r["instances"] for r in rows]
    lx = [math.log10(max(x, 1)) for x in xs]
    x_of = lambda v: pad + (math.log10(max(v, 1)) - min(lx)) / ((max(lx) - min(lx)) or 1) * (w - 2 * pad)

    def line(values, colour, label, right):
        top = max(values) or 1
        y_of = lambda v: h - pad - v / top * (h - 2 * pad)
        pts = " ".join(f"{x_of(x):.1f},{y_of(v):.1f}" for x, v in zip(xs, values))
        axis_x = w - pad if right else pad
        ticks = "".join(
            f'<text x="{axis_x + (8 if right else -8)}" y="{y_of(top * f) + 4:.1f}" font-size="11" '
            f'text-anchor="{"start" if right else "end"}" fill="{colour}">{top * f:.0f}</text>' for f in (0, 0.5, 1))
        dots = "".join(f'<circle cx="{x_of(x):.1f}" cy="{y_of(v):.1f}" r="3" fill="{colour}"/>' for x, v in zip(xs, values))
        return (f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>{dots}{ticks}'
                f'<text x="{axis_x}" y="{pad - 14}" font-size="12" text-anchor="middle" fill="{colour}">{label}</text>')

    xticks = "".join(f'<text x="{x_of(x):.1f}" y="{h - pad + 18}" font-size="11" text-anchor="middle">{x}</text>' for x in xs)
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">'
           f'<rect width="{w}" height="{h}" fill="white"/>'
           f'<text x="{w / 2}" y="20" font-size="14" text-anchor="middle">Sweep: wall time and AWS calls by instance count</text>'
           f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>'
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>'
           f'<line x1="{w - pad}" y1="{pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>'
           f'{xticks}<text x="{w / 2}" y="{h - 20}" font-size="12" text-anchor="middle">instances (log scale)</text>'
           + line([r["wall_s"] for r in rows], "#c0392b", "wall time (s)", False)
           + line([r["calls"] for r in rows], "#2471a3", "AWS calls", True)
           + "</svg>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg)


def zipped_bytes(binary):
    """Size of the Lambda zip of `binary`: one entry named bootstrap (its mode kept), deflate level 9."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lambda.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.write(binary, "bootstrap")
        return path.stat().st_size


def cargo_target():
    return Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/connect-slr-guard/target"))


def build_hello(profile, crate="hello-lambda"):
    """Builds a floor (bench/hello-lambda, or its TLS variant crate="hello-lambda/https") into the same
    target directory the guard uses."""
    manifest = REPO / "bench" / crate / "Cargo.toml"
    args = ["cargo", "build", "--quiet", "--locked", "--manifest-path", str(manifest), "--target-dir", str(cargo_target())]
    subprocess.run(args + (["--release"] if profile == "release" else []), check=True)
    return cargo_target() / profile / ("hello-lambda-https" if crate.endswith("https") else "hello-lambda")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a quick run for CI: 3 starts, fleets of 1 and 10")
    parser.add_argument("--profile", default=None, help="cargo profile of the binaries (default: release; debug with --smoke)")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--bin-dir", help="directory of the guard binaries (default: the cargo profile's)")
    parser.add_argument("--parts", default="cold,calls,sweep,pacing,tls,central",
                        help="comma-separated subset of cold,calls,sweep,pacing,tls,central")
    parser.add_argument("--central-concurrency", default="4,places",
                        help="function processes draining the work queue in the central part, one run each: a "
                             "number, or places (one per account and Region, as Lambda scales); default 4,places")
    args = parser.parse_args()
    profile = args.profile or ("debug" if args.smoke else "release")
    bin_dir = Path(args.bin_dir) if args.bin_dir else cargo_target() / profile
    parts = set(args.parts.split(","))
    hello = build_hello(profile)
    hello_https = build_hello(profile, "hello-lambda/https") if "tls" in parts else None
    bench = Bench(bin_dir, hello, hello_https)
    try:
        lambda_bin = bin_dir / "connect-slr-guard-lambda"
        results = {"profile": profile, "bin_dir": str(bin_dir), "latency_ms": args.latency_ms,
                   "lambda_bytes": lambda_bin.stat().st_size, "lambda_zip_bytes": zipped_bytes(lambda_bin)}
        if "cold" in parts:
            print("cold starts...", file=sys.stderr)
            results["cold_start"] = bench.cold_starts(3 if args.smoke else 20)
        if "calls" in parts:
            print("calls per event kind...", file=sys.stderr)
            results["calls"] = bench.calls_per_event_kind()
            results["unused_key"] = bench.unused_key_event()
        if "sweep" in parts:
            print("sweep scaling...", file=sys.stderr)
            results["sweep"] = bench.sweep_scaling([1, 10] if args.smoke else [1, 10, 100, 500], args.latency_ms)
        if "pacing" in parts:
            print("pacing...", file=sys.stderr)
            # The smoke run checks each API's bucket at 20/s; a full run measures the default quota.
            results["pacing"] = bench.pacing(3, 20) if args.smoke else bench.pacing(20, DEFAULT_CONNECT_RPS)
        if "tls" in parts:
            print("TLS cold path...", file=sys.stderr)
            results["tls"] = bench.tls_cold_path(3 if args.smoke else 20)
        if "central" in parts:
            print("central mode...", file=sys.stderr)
            # The smoke run: 1 and 2 accounts at 20/s; a full run: up to 20 accounts at the default quota.
            concurrencies = [c if c == "places" else int(c) for c in args.central_concurrency.split(",")]
            results["central"] = (bench.central([1, 2], 20, 2) if args.smoke
                                  else [row for c in concurrencies
                                        for row in bench.central([1, 5, 10, 20], DEFAULT_CONNECT_RPS, c)])
    finally:
        bench.close()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "benchmark.json").write_text(json.dumps(results, indent=2))
    (OUT / "benchmark.md").write_text(markdown(results))
    if "sweep" in results and not args.smoke:
        svg_chart(results["sweep"], REPO / "docs" / "sweep-scaling.svg")
    check(results)
    if "central" in results:
        print(central_chart(results["central"]), file=sys.stderr)
    print(json.dumps(results, indent=2))


def markdown(results):
    """The tables of BENCHMARKS.md, from one run's results."""
    out = [f"Guard binary ({results['profile']}): {results['lambda_bytes']:,} B; zipped as `bootstrap` (deflate 9): "
           f"{results['lambda_zip_bytes']:,} B ({results['lambda_zip_bytes'] / 2**20:.2f} MiB).", ""]
    if "cold_start" in results:
        g, h = results["cold_start"]["guard"], results["cold_start"]["hello"]
        out += ["| | guard | hello-world floor | ratio |", "|---|---|---|---|",
                f"| Init, median of {g['runs']} starts | {g['init_ms']:.1f} ms | {h['init_ms']:.1f} ms | {g['init_ms'] / h['init_ms']:.1f}x |",
                f"| RSS after Init | {g['rss_after_init_mb']:.1f} MB | {h['rss_after_init_mb']:.1f} MB | |",
                f"| first invocation (targeted event) | {g['first_ms']:.0f} ms | {h['first_ms']:.1f} ms (echo) | |",
                f"| warm invocation, targeted event | {g['warm_targeted_ms']:.0f} ms | | |",
                f"| warm invocation, sweep (1 instance) | {g['warm_sweep_ms']:.0f} ms | | |",
                f"| peak RSS after those invocations | {g['peak_rss_mb']:.1f} MB | {h['peak_rss_mb']:.1f} MB | |", ""]
    if "calls" in results:
        out += ["| event kind | sample | calls | minimal | made twice | by operation |", "|---|---|---|---|---|---|"]
        for kind, row in results["calls"].items():
            ops = ", ".join(f"{op} {n}" for op, n in row["by_operation"].items())
            out.append(f"| {kind} | `{row['event']}` | {row['calls']} | {MINIMAL_CALLS[kind]} | {row['made_twice']} | {ops} |")
        out.append("")
    if "unused_key" in results:
        out += ["| KMS event on a key no instance uses | Connect calls | AWS calls | by operation |",
                "|---|---|---|---|"]
        out += [f"| {mode} | {r['connect_calls']} | {r['aws_calls']} | "
                + ", ".join(f"{op} {n}" for op, n in r["by_operation"].items()) + " |"
                for mode, r in results["unused_key"].items()]
        out.append("")
    if "sweep" in results:
        out += [f"| instances | wall time ({results['latency_ms']} ms per call) | AWS calls | Connect calls | made twice | peak RSS |",
                "|---|---|---|---|---|---|"]
        out += [f"| {r['instances']} | {r['wall_s']:.2f} s | {r['calls']} | {r['connect_calls']} | {r['made_twice']} | {r['peak_rss_mb']:.1f} MB |"
                for r in results["sweep"]]
        out.append("")
    if "pacing" in results:
        p = results["pacing"]
        out += [f"Sweep of {p['instances']} instances at `CONNECT_API_RPS={p['rps']:g}` (each API its own bucket, burst "
                f"{CONNECT_BURST}): {p['wall_s']:.1f} s against a quota-bound limit of {p['quota_bound_s']:.1f} s "
                f"({p['ratio_to_limit']}x).", "",
                "| Connect API | calls | calls/s after the burst | faster than its bucket |", "|---|---|---|---|"]
        out += [f"| {op} | {a['calls']} | {a['calls_per_s_after_burst']} | {a['over_bucket']} |"
                for op, a in p["apis"].items()]
    if "central" in results:
        c = results["central"]
        out += ["", f"Central mode: a scheduled sweep fanned out over N accounts x {c[0]['regions']} Regions, "
                f"{c[0]['instances_per_place']} instance each, at `CONNECT_API_RPS={c[0]['rps']:g}`.", "",
                "| functions | accounts | parts | wall time | quota-bound limit | ratio | Connect calls | "
                "per account and Region: calls/s per API after the burst (median, max) | all its Connect calls/s "
                "over its part | organisation calls/s | faster than its bucket |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        out += [f"| {r['functions']} | {r['accounts']} | {r['parts']} | {r['wall_s']:.1f} s | "
                f"{r['quota_bound_s']:.1f} s | {r['ratio_to_limit']}x | {r['connect_calls']} | "
                f"{r['place_api_rps_median']}, {r['place_api_rps_max']} | "
                f"{r['place_calls_per_s_median']} | {r['org_calls_per_s']} | {r['over_bucket']} |" for r in c]
        out += ["", "```", central_chart(c), "```"]
    if "tls" in results:
        t = results["tls"]
        g, h = t["guard"], t["hello"]
        out += ["", f"TLS cold path: HTTPS through bench/tls_front.py, roots from an Amazon Linux 2023-shaped directory "
                f"({t['bundle_certs']} certificates in the bundle), median of {t['runs']} starts each; "
                f"negotiated {', '.join(t['guard_tls'])}.", "",
                "| | guard | floor (one HTTPS GET) | ratio |", "|---|---|---|---|",
                f"| Init | {g['init_ms']:.1f} ms | {h['init_ms']:.1f} ms | {g['init_ms'] / h['init_ms']:.1f}x |",
                f"| first invocation | {g['first_ms']:.0f} ms ({g['aws_calls']:.0f} AWS calls over "
                f"{g['tls_handshakes']:.0f} TLS connections) | {h['first_ms']:.1f} ms | |",
                f"| Init + first invocation | {g['total_ms']:.0f} ms | {h['total_ms']:.1f} ms | "
                f"{g['total_ms'] / h['total_ms']:.1f}x |",
                f"| second invocation (connections pooled) | {g['second_ms']:.0f} ms | | |",
                f"| first minus second, per start | {g['first_minus_second_ms']:.0f} ms | | |",
                f"| RSS after Init | {g['rss_after_init_mb']:.1f} MB | {h['rss_after_init_mb']:.1f} MB | |",
                f"| peak RSS after the first invocation | {g['peak_rss_mb']:.1f} MB | {h['peak_rss_mb']:.1f} MB | |"]
    return "\n".join(out) + "\n"


def check(results):
    """What must hold on every run, smoke included: fails the run otherwise."""
    for kind, row in results.get("calls", {}).items():
        assert row["made_twice"] == 0, f"{kind}: a call was made twice in one pass: {row}"
        assert row["calls"] <= MINIMAL_CALLS[kind], f"{kind}: more calls than its scope needs: {row}"
    unused = results.get("unused_key", {}).get("ledger, after a sweep")
    if unused is not None:
        assert unused["connect_calls"] == 0, f"a key nobody uses cost Connect calls: {unused}"
    for row in results.get("sweep", []):
        assert row["made_twice"] == 0, f"sweep of {row['instances']}: a call was made twice: {row}"
        assert row["instances_checked"] == row["instances"], row
    if "calls" in results:
        targeted = results["calls"]["instance (Connect event)"]["by_operation"]
        assert "connect:ListInstances" not in targeted, "an instance event must not list the account"
    if "pacing" in results:
        p = results["pacing"]
        # The checker itself: twice the rate must be caught, the rate itself must pass.
        assert bucket_overruns([i / 40 for i in range(40)], 20, CONNECT_BURST) > 0
        assert bucket_overruns([i / 20 for i in range(40)], 20, CONNECT_BURST) == 0
        for op, a in p["apis"].items():
            assert a["over_bucket"] == 0, f"{op} went faster than {p['rps']}/s, burst {CONNECT_BURST}: {p}"
        assert {"ListInstances", "ListInstanceStorageConfigs"} <= set(p["apis"]), p
        assert p["ratio_to_limit"] <= 1.2, f"the sweep took over 1.2x its quota-bound limit: {p}"
    for r in results.get("central", []):
        where = f"central, {r['accounts']} accounts, {concurrency_label(r['concurrency'])}"
        assert r["parts"] == r["places"] == r["places_read"], f"{where}: not one part per account and Region: {r}"
        assert r["messages"] == r["parts"] + 1, f"{where}: a continuation or a stray message: {r}"
        assert r["list_instances_max_per_place"] == 1, f"{where}: an account and Region listed twice: {r}"
        assert r["over_bucket"] == 0, f"{where}: Connect calls outran a place's bucket: {r}"
        assert r["alerts"] == 0, f"{where}: alerts on healthy accounts: {r}"
        # At the quota the quota decides (faster, the fixed costs do); one process per place oversubscribes the
        # bench's host (the emulators and N functions on its cores): that series shows the host, not the guard.
        if r["rps"] == DEFAULT_CONNECT_RPS and r["concurrency"] != "places":
            assert r["ratio_to_limit"] <= 1.5, f"{where}: over 1.5x its quota-bound limit: {r}"
    if "tls" in results:
        t = results["tls"]
        g, h = t["guard"], t["hello"]
        # The first call really went over TLS, trusting the throwaway CA through the cert dir, and found the
        # healthy account healthy (an unverifiable call would have been a CHECK_INCOMPLETE finding).
        assert g["tls_handshakes_min"] >= 1 and g["handshake_failures_max"] == 0, f"guard: no clean TLS: {t}"
        assert g["aws_calls_min"] > 0, f"guard: no AWS call reached the proxy through the front: {t}"
        assert g["findings_max"] == 0, f"guard: findings on the healthy account over TLS: {t}"
        assert h["tls_handshakes_min"] == 1 and h["handshake_failures_max"] == 0, f"floor: not one TLS call: {t}"
        assert t["floor_https_status"] == [200], t
        assert t["floor_refuses_untrusted"], f"floor: a certificate from an untrusted CA was not refused: {t}"
        assert t["bundle_certs"] > 1, t


if __name__ == "__main__":
    main()
