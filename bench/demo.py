"""The one-command demo: an emulated account on loopback, the real Lambda
binary driven over the Lambda Runtime API, real sample events replayed, and
the alerts on-call would receive read back from an SQS subscriber.

Run it with `make demo` (which builds what it needs first).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from conftest import OUT, REPO, binary, sample_event
from local_aws import LocalAws
from runtime_api import LambdaFunction
from scenarios import ROLE_ARN, SCENARIOS, TOPIC_ARN, event_for, seed, spec_for
from test_e2e import drain

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def banner(text):
    print(f"\n{BOLD}== {text}{RESET}")


def replay(aws, fn, env, scenario_name, event_file, story):
    scenario = SCENARIOS[scenario_name]
    aws.reset()
    seeded = seed(aws, spec_for(scenario_name))
    event = event_for(scenario, seeded, sample_event(event_file))
    detail = event.get("detail", {})
    banner(story)
    print(f"{DIM}account state: {scenario_name}; replaying events/{event_file} "
          f"({detail.get('eventName', event['detail-type'])} by {detail.get('userIdentity', {}).get('arn', 'the schedule')}){RESET}")
    started = time.monotonic()
    ok, body = fn.invoke(event)
    elapsed = time.monotonic() - started
    print(f"Lambda answered in {elapsed * 1000:.0f} ms: {json.dumps({k: body.get(k) for k in ('scope', 'instances_checked', 'alerts_published', 'checks_incomplete')})}")
    if not ok:
        raise SystemExit(f"invocation failed: {body}")
    delivered = drain(aws.client("sqs"), seeded.queue_url)
    if not delivered:
        print(f"{BOLD}No alert: nothing has drifted.{RESET}")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(event, f)
    # The email body, from the same renderer the Lambda publishes with.
    texts = subprocess.run([binary("connect-slr-guard"), "check-event", f.name, "--format", "text"],
                           env=env, capture_output=True, text=True).stdout.split("\n---\n")
    os.unlink(f.name)
    by_fingerprint = {re.search(r"Fingerprint: (\w+)", t).group(1): t.strip() for t in texts if "Fingerprint:" in t}
    for n, envelope in enumerate(delivered, 1):
        print(f"\n{BOLD}Alert {n} of {len(delivered)}, subject: {envelope['Subject']}{RESET}")
        doc = json.loads(envelope["Message"])
        print(f"{DIM}-- what on-call reads (email; rendered by `connect-slr-guard check-event --format text`) --{RESET}")
        print(textwrap.indent(by_fingerprint.get(doc["fingerprint"], "(not rendered)"), "  "))
        print(f"{DIM}-- what machine subscribers get (SQS, Lambda, HTTPS): connect-slr-guard/alert/v1 --{RESET}")
        print(textwrap.indent(json.dumps(doc, indent=2), "  "))


def ledger_demo(aws, env):
    """The ledger's lifecycle: OPEN once, silence on repeats, RESOLVED after
    the fix, and a grant change that settles without a page."""
    from test_ledger import now_event, sqs_event
    banner("4. With the alert ledger (LEDGER_TABLE): one page per drift")
    aws.reset()
    seeded = seed(aws, spec_for("key-disabled"))
    table, sqs = "connect-slr-guard-ledger", aws.client("sqs")
    aws.client("dynamodb").create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    queue_url = sqs.create_queue(QueueName="connect-slr-guard-rechecks")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    fn = LambdaFunction(binary("connect-slr-guard-lambda"),
                        {**env, "LEDGER_TABLE": table, "SETTLE_WINDOW": "4s", "RECHECK_QUEUE_URL": queue_url},
                        log_path=OUT / "lambda-ledger.log")
    sweep = json.loads(sample_event("scheduled-sweep.json"))

    def show(what, event):
        ok, body = fn.invoke(event)
        if not ok:
            raise SystemExit(f"invocation failed: {body}")
        docs = [json.loads(m["Message"]) for m in drain(sqs, seeded.queue_url)]
        pages = ", ".join(f"{d['status']} {d['rule']} ({d['fingerprint'][:8]}…)" for d in docs) or "no page"
        keys = ["batchItemFailures"] if "batchItemFailures" in body else [
            "alerts_published", "held", "rechecks_scheduled", "resolved"]
        counts = {k: body.get(k) for k in keys}
        print(f"{what}: {BOLD}{pages}{RESET} {DIM}{json.dumps(counts)}{RESET}")

    try:
        fn.wait_ready()
        show("sweep 1, the domain key disabled", sweep)
        show("sweep 2, still disabled", sweep)
        aws.client("kms").enable_key(KeyId=seeded.domain_key.rsplit("/", 1)[1])
        show("sweep 3, after `aws kms enable-key`", sweep)
        scenario = SCENARIOS["profiles-grant-missing"]
        aws.client("kms").revoke_grant(KeyId=seeded.domain_key, GrantId=grant_of(aws, seeded.domain_key))
        show("RevokeGrant just now (SETTLE_WINDOW 4s)", now_event(scenario, seeded, "kms-revoke-grant.json"))
        aws.client("kms").create_grant(KeyId=seeded.domain_key, GranteePrincipal=ROLE_ARN,
                                       Operations=["Decrypt", "GenerateDataKey"])
        show("CreateGrant a moment later", now_event(scenario, seeded, "kms-create-grant.json"))
        time.sleep(4.2)
        for m in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5, AttributeNames=["All"]).get("Messages", []):
            show("the re-check, once the window has passed", sqs_event(m, queue_arn))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    finally:
        fn.close()


def grant_of(aws, key_arn):
    return aws.client("kms").list_grants(KeyId=key_arn)["Grants"][0]["GrantId"]


def main():
    started = time.monotonic()
    banner("Starting an emulated AWS account on loopback (moto + Connect/Customer Profiles test double)")
    aws = LocalAws(log_dir=OUT)
    env = {**os.environ, **aws.sdk_env(), "ALERT_TOPIC_ARN": TOPIC_ARN, "CONNECT_API_RPS": "1000"}
    fn = LambdaFunction(binary("connect-slr-guard-lambda"), env, log_path=OUT / "lambda.log")
    try:
        init = fn.wait_ready()
        print(f"moto on {aws.moto_url}, test double on {aws.double_url}, "
              f"connect-slr-guard-lambda polling the Runtime API on {fn.host.address} (init {init * 1000:.0f} ms)")
        replay(aws, fn, env, "profiles-grant-missing", "kms-revoke-grant.json",
               "1. Someone revokes the KMS grant behind the Customer Profiles domain (the 31 Jan 2025 case)")
        replay(aws, fn, env, "slr-deleted", "iam-delete-service-linked-role.json",
               "2. Someone deletes the instance's service-linked role")
        replay(aws, fn, env, "healthy", "scheduled-sweep.json",
               "3. The hourly sweep over a clean account")
        ledger_demo(aws, env)
    finally:
        fn.close()
        aws.close()
    banner(f"Done in {time.monotonic() - started:.1f} s. Logs: {OUT.relative_to(REPO)}/")


if __name__ == "__main__":
    main()
