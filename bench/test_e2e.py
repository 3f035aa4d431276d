"""End to end, over real protocols: an EventBridge event -> the real Lambda
binary over the Lambda Runtime API -> AWS APIs over HTTP (moto, and the
Connect/Customer Profiles test double) -> SNS -> an SQS subscriber, where
every alert is read back and checked field by field."""

import json
import re
import subprocess

import pytest

from conftest import binary, rule_catalogue, sample_event, sample_events
from local_aws import ACCOUNT, REGION
from scenarios import SCENARIOS, TOPIC_ARN, event_for, seed, sorted_alerts, spec_for


def drain(sqs, queue_url):
    """Every message on the queue, as SNS delivered it."""
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return messages
        for m in batch:
            messages.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def remediations(rule):
    """How `rule`'s alerts' remediation may start: as the scenarios that expect it say."""
    return {s.remediation for s in SCENARIOS.values() if any(r == rule for r, _, _ in s.expect)}


def check_alert(envelope, event):
    """Checks one delivered alert field by field; returns (rule, instance, resource)."""
    doc = json.loads(envelope["Message"])
    rule = doc["rule"]
    assert doc["schema"] == "connect-slr-guard/alert/v1"
    assert doc["status"] == "OPEN"
    assert doc["severity"] == rule_catalogue()[rule]["severity"]
    assert (doc["account"], doc["region"]) == (ACCOUNT, REGION)
    assert re.fullmatch(r"[0-9a-f]{32}", doc["fingerprint"])
    assert doc["summary"] and isinstance(doc["details"], dict)
    fixes = tuple(fix.format(resource=doc["resource_arn"]) for fix in remediations(rule))
    assert fixes, f"{rule}: no scenario in bench/scenarios.py expects it, so its remediation is unchecked"
    assert doc["remediation"].startswith(fixes), doc["remediation"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", doc["observed_at"])
    detail = event.get("detail", {})
    assert doc["trigger"]["kind"] == ("schedule" if event["detail-type"] == "Scheduled Event" else "event")
    assert doc["trigger"]["event_name"] == detail.get("eventName", event["detail-type"])
    assert doc["trigger"]["event_id"] == detail.get("eventID", event["id"])
    identity = detail.get("userIdentity", {})
    assert doc["trigger"]["actor"] == (identity.get("arn") or identity.get("invokedBy") or detail.get("sourceIPAddress"))
    attrs = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
    assert attrs == {"severity": doc["severity"], "rule": rule, "status": "OPEN"}
    assert envelope["Subject"].startswith(f"[{doc['severity']}] {rule}: ") and len(envelope["Subject"]) < 100
    return rule, doc["instance_arn"], doc["resource_arn"], doc["fingerprint"]


def seed_scenario(account, proxy, name):
    """Seeds a scenario's account state and sets its faults on the proxy."""
    seeded = seed(account, spec_for(name))
    proxy.set(SCENARIOS[name].faults)
    return seeded


def run_event(function, account, seeded, event):
    ok, body = function.invoke(event)
    assert ok, f"invocation failed: {body}"
    delivered = drain(account.client("sqs"), seeded.queue_url)
    assert body.get("alerts_published", 0) == len(delivered), body
    return body, [check_alert(m, event) for m in delivered]


def test_every_rule_in_the_catalogue_has_a_scenario(catalogue):
    expected = {rule for s in SCENARIOS.values() for rule, _, _ in s.expect}
    # REMEDIATION_FAILED comes from a fix, not a snapshot: test_remediation.py.
    judged = {rule for rule, spec in catalogue.items() if spec["judged_by"] == "rules"}
    missing = sorted(judged - expected)
    assert not missing, f"no scenario in bench/scenarios.py SCENARIOS expects {', '.join(missing)}"
    unknown = sorted(expected - set(catalogue))
    assert not unknown, f"bench/scenarios.py expects rules the catalogue does not have: {', '.join(unknown)}"
    unfixed = sorted(s.name for s in SCENARIOS.values() if s.expect and not s.remediation)
    assert not unfixed, f"scenarios in bench/scenarios.py that expect alerts but no remediation: {', '.join(unfixed)}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_event_raises_exactly_the_expected_alerts(function, account, proxy, name):
    scenario = SCENARIOS[name]
    seeded = seed_scenario(account, proxy, name)
    event = event_for(scenario, seeded, sample_event(scenario.event))
    _, alerts = run_event(function, account, seeded, event)
    assert sorted_alerts(a[:3] for a in alerts) == scenario.resolve(seeded)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_sweep_raises_exactly_the_expected_alerts(function, account, proxy, name):
    scenario = SCENARIOS[name]
    seeded = seed_scenario(account, proxy, name)
    body, alerts = run_event(function, account, seeded, json.loads(sample_event("scheduled-sweep.json")))
    assert sorted_alerts(a[:3] for a in alerts) == scenario.resolve(seeded, sweep=True)
    assert body["instances_checked"] >= 1


def test_same_drift_same_fingerprint_whatever_the_trigger(function, account):
    scenario = SCENARIOS["profiles-grant-missing"]
    seeded = seed(account, spec_for(scenario.name))
    _, by_event = run_event(function, account, seeded, event_for(scenario, seeded, sample_event(scenario.event)))
    _, by_sweep = run_event(function, account, seeded, json.loads(sample_event("scheduled-sweep.json")))
    assert [a[3] for a in by_event] == [a[3] for a in by_sweep]


# A DeleteServiceLinkedRole event means the role is going: no account is
# healthy after it (the slr-deletion-pending scenario checks its alert).
HEALTHY_AFTER = [f for f in sample_events() if f != "iam-delete-service-linked-role.json"]


@pytest.mark.parametrize("file", HEALTHY_AFTER)
def test_every_sample_event_is_handled_on_a_healthy_account(function, account, file):
    seeded = seed(account, spec_for("healthy"))
    event = event_for(SCENARIOS["healthy"], seeded, sample_event(file))
    body, alerts = run_event(function, account, seeded, event)
    assert alerts == []
    if file.startswith("ignored-"):
        assert "ignored" in body
    else:
        assert body["findings"] == [] and body["checks_incomplete"] == 0, body


@pytest.mark.parametrize("payload", [{}, {"detail-type": 3}, [], "text", {"source": "aws.kms", "detail-type": "AWS API Call via CloudTrail", "detail": {"eventName": "DisableKey", "requestParameters": {"keyId": "$(reboot)"}}}])
def test_malformed_events_are_acknowledged(function, account, payload):
    ok, body = function.invoke(payload)
    assert ok and "ignored" in body, body


def test_alerts_that_cannot_be_published_fail_the_invocation(function, account):
    seeded = seed(account, spec_for("key-disabled"))
    account.client("sns").delete_topic(TopicArn=TOPIC_ARN)
    ok, body = function.invoke(json.loads(sample_event("scheduled-sweep.json")))
    assert not ok, "Lambda must fail so its retries and on-failure destination keep the event"
    assert body["errorType"] == "AlertDeliveryFailed"
    assert "1 of 1 alerts could not be published" in body["errorMessage"]


def cli(args, env):
    return subprocess.run([binary("connect-slr-guard"), *args], env=env, capture_output=True, text=True, timeout=120)


def test_cli_audit_reports_drift_and_exits_1(account, guard_env):
    seed(account, spec_for("slr-deleted"))
    result = cli(["audit", "--format", "json"], guard_env)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert [f["rule"] for f in report["findings"]] == ["CONNECT_SLR_MISSING"]
    assert report["findings"][0]["remediation"].startswith(SCENARIOS["slr-deleted"].remediation)
    table = cli(["audit"], guard_env)
    assert table.returncode == 1
    assert "CRITICAL  CONNECT_SLR_MISSING" in table.stdout and "fix: aws iam create-service-linked-role" in table.stdout


def test_cli_on_a_healthy_account_exits_0(account, guard_env, tmp_path):
    seeded = seed(account, spec_for("healthy"))
    assert cli(["audit"], guard_env).returncode == 0
    event = tmp_path / "event.json"
    event.write_text(json.dumps(event_for(SCENARIOS["healthy"], seeded, sample_event("kms-disable-key.json"))))
    result = cli(["check-event", str(event), "--format", "json"], guard_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["instances_checked"] == 1


def test_cli_publish_sends_the_same_alerts(account, guard_env):
    seeded = seed(account, spec_for("policy-detached"))
    result = cli(["audit", "--publish"], guard_env)
    assert result.returncode == 1, result.stderr
    delivered = drain(account.client("sqs"), seeded.queue_url)
    assert [json.loads(m["Message"])["rule"] for m in delivered] == ["CONNECT_SLR_POLICY_DETACHED"]
