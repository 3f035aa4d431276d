"""The alert ledger end to end: real DynamoDB, SNS and SQS in the emulator,
the real binaries, one fresh process per pass (the CLI's `audit --publish`,
and the Lambda over the Runtime API), so the only memory is the table."""

import json
import subprocess
import threading
import time

import pytest

from conftest import OUT, binary, sample_event
from runtime_api import LambdaFunction
from local_aws import http_json
from scenarios import (INSTANCE_ID, OTHER_INSTANCE_ID, ROLE_ARN, SCENARIOS, connect_state, event_for, instance_arn,
                       seed, spec_for)
from test_e2e import drain

TABLE = "connect-slr-guard-ledger"


@pytest.fixture()
def ledger_env(account, guard_env):
    account.client("dynamodb").create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    return {**guard_env, "LEDGER_TABLE": TABLE}


def sweep(env):
    """One pass in a fresh process: `connect-slr-guard audit --publish`."""
    result = subprocess.run([binary("connect-slr-guard"), "audit", "--publish", "--format", "json"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def pages(account, seeded):
    """(status, rule, instance, fingerprint, document) of every page SNS delivered to the queue."""
    docs = [json.loads(m["Message"]) for m in drain(account.client("sqs"), seeded.queue_url)]
    return sorted(((d["status"], d["rule"], d["instance_arn"], d["fingerprint"], d) for d in docs),
                  key=lambda p: p[:4])


def statuses(found):
    return [(status, rule) for status, rule, *_ in found]


def test_three_sweeps_over_one_drift_page_one_open(account, ledger_env):
    seeded = seed(account, spec_for("key-disabled"))
    reports = [sweep(ledger_env) for _ in range(3)]
    found = pages(account, seeded)
    assert statuses(found) == [("OPEN", "KMS_KEY_UNUSABLE")]
    assert found[0][4]["first_seen"], "alerts under a ledger carry first_seen"
    assert [r["alerts_published"] for r in reports] == [1, 0, 0]
    assert all(r["findings"] for r in reports), "the report still lists the drift"


def test_a_fixed_drift_resolves_once_with_its_open_fingerprint(account, ledger_env):
    seeded = seed(account, spec_for("key-disabled"))
    sweep(ledger_env)
    [(_, _, _, fingerprint, opened)] = pages(account, seeded)
    account.client("kms").enable_key(KeyId=seeded.domain_key.rsplit("/", 1)[1])
    report = sweep(ledger_env)
    sweep(ledger_env)
    found = pages(account, seeded)
    assert statuses(found) == [("RESOLVED", "KMS_KEY_UNUSABLE")]
    resolved = found[0][4]
    assert (resolved["fingerprint"], resolved["resource_arn"]) == (fingerprint, opened["resource_arn"])
    assert resolved["resolved_reason"] == "no longer found"
    assert resolved["first_seen"] == opened["first_seen"]
    assert report["resolved"] == 1


def test_a_drift_still_there_is_reminded_each_interval(account, ledger_env):
    # (No reminder within the interval: test_three_sweeps_over_one_drift_page_one_open,
    # at the default 24h, and the lifecycle property tests.)
    env = {**ledger_env, "REMINDER_INTERVAL": "2s"}
    seeded = seed(account, spec_for("key-disabled"))
    sweep(env)
    [opened] = pages(account, seeded)
    time.sleep(2.5)
    sweep(env)
    [reminded] = pages(account, seeded)
    assert (opened[0], reminded[0]) == ("OPEN", "REMINDER")
    assert reminded[4]["first_seen"] == opened[4]["first_seen"]
    assert reminded[3] == opened[3], "same fingerprint"


def test_an_incomplete_check_does_not_resolve(account, ledger_env, proxy):
    seeded = seed(account, spec_for("key-disabled"))
    sweep(ledger_env)
    pages(account, seeded)
    account.client("kms").enable_key(KeyId=seeded.domain_key.rsplit("/", 1)[1])
    proxy.set({"connect": {"mode": "deny", "match": INSTANCE_ID}})
    sweep(ledger_env)
    assert statuses(pages(account, seeded)) == [("OPEN", "CHECK_INCOMPLETE")], "the fix is not believed unseen"
    proxy.set({})
    sweep(ledger_env)
    assert statuses(pages(account, seeded)) == [("RESOLVED", "CHECK_INCOMPLETE"), ("RESOLVED", "KMS_KEY_UNUSABLE")]


def test_a_targeted_event_resolves_only_what_it_covered(account, ledger_env, proxy):
    seeded = seed(account, spec_for("access-denied-one-instance"))
    proxy.set(SCENARIOS["access-denied-one-instance"].faults)
    sweep(ledger_env)
    assert statuses(pages(account, seeded)) == [("OPEN", "CHECK_INCOMPLETE")]
    proxy.set({})
    about_the_other = event_for(SCENARIOS["healthy"], seeded, sample_event("connect-update-instance-attribute.json"))
    event_file = OUT / "ledger-event.json"
    event_file.write_text(json.dumps(about_the_other))
    result = subprocess.run([binary("connect-slr-guard"), "check-event", str(event_file), "--publish"],
                            env=ledger_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert pages(account, seeded) == [], f"an event about {INSTANCE_ID} says nothing of {OTHER_INSTANCE_ID}"
    sweep(ledger_env)
    found = pages(account, seeded)
    # Now readable, the other instance (no domain of its own) reaches the
    # amazon-connect- domain: a new drift, paged once.
    assert statuses(found) == [("OPEN", "PROFILES_CROSS_DOMAIN_EXPOSURE"), ("RESOLVED", "CHECK_INCOMPLETE")]
    assert found[1][2] == instance_arn(OTHER_INSTANCE_ID)


def test_concurrent_passes_page_once(account, ledger_env):
    seeded = seed(account, spec_for("key-disabled"))
    threads = [threading.Thread(target=sweep, args=(ledger_env,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses(pages(account, seeded)) == [("OPEN", "KMS_KEY_UNUSABLE")]


def test_sns_down_fails_the_invocation_and_the_retry_pages_once(account, ledger_env, proxy):
    seeded = seed(account, spec_for("key-disabled"))
    fn = LambdaFunction(binary("connect-slr-guard-lambda"), ledger_env, log_path=OUT / "lambda-ledger.log")
    try:
        fn.wait_ready()
        event = json.loads(sample_event("scheduled-sweep.json"))
        proxy.set({"sns": {"mode": "5xx"}})
        ok, body = fn.invoke(event)
        assert not ok and body["errorType"] == "AlertDeliveryFailed", body
        proxy.set({})
        ok, body = fn.invoke(event)
        assert ok, body
        ok, again = fn.invoke(event)
        assert ok and again["alerts_published"] == 0, again
    finally:
        fn.close()
    assert statuses(pages(account, seeded)) == [("OPEN", "KMS_KEY_UNUSABLE")]
    assert body["alerts_published"] == 1 and body["resolved"] == 0


def now_event(scenario, seeded, name):
    """A sample event about this account, happening now."""
    event = event_for(scenario, seeded, sample_event(name))
    event["detail"]["eventTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return event


def sqs_event(message, queue_arn):
    """The event Lambda's SQS event source hands the function for one message."""
    return {"Records": [{
        "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"], "attributes": message.get("Attributes", {}),
        "messageAttributes": {}, "md5OfBody": message["MD5OfBody"], "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn, "awsRegion": "eu-west-2"}]}


@pytest.fixture()
def settling(account, ledger_env):
    """A Lambda with a 6 s settle window and its re-check queue."""
    sqs = account.client("sqs")
    queue_url = sqs.create_queue(QueueName="connect-slr-guard-rechecks")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    env = {**ledger_env, "SETTLE_WINDOW": "6s", "RECHECK_QUEUE_URL": queue_url}
    fn = LambdaFunction(binary("connect-slr-guard-lambda"), env, log_path=OUT / "lambda-settle.log")
    fn.wait_ready()

    def deliver_rechecks():
        """Waits for the delayed re-checks and hands them to the function as SQS would."""
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5,
                                       AttributeNames=["All"]).get("Messages", [])
        for m in messages:
            ok, body = fn.invoke(sqs_event(m, queue_arn))
            assert ok and body == {"batchItemFailures": []}, body
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        return len(messages)

    yield fn, deliver_rechecks
    fn.close()


def test_a_grant_change_settles_then_the_recheck_pages_what_is_still_there(account, settling):
    fn, deliver_rechecks = settling
    scenario = SCENARIOS["profiles-grant-missing"]
    seeded = seed(account, spec_for(scenario.name))
    ok, body = fn.invoke(now_event(scenario, seeded, "kms-revoke-grant.json"))
    assert ok, body
    assert (body["alerts_published"], body["held"], body["rechecks_scheduled"]) == (0, 1, 1), body
    assert pages(account, seeded) == [], "nothing pages while the revocation settles"
    time.sleep(6.2)
    assert deliver_rechecks() == 1
    assert statuses(pages(account, seeded)) == [("OPEN", "PROFILES_KMS_GRANT_MISSING")]


def test_a_grant_revoked_and_restored_within_the_window_never_pages(account, settling):
    fn, deliver_rechecks = settling
    scenario = SCENARIOS["profiles-grant-missing"]
    seeded = seed(account, spec_for(scenario.name))
    ok, body = fn.invoke(now_event(scenario, seeded, "kms-revoke-grant.json"))
    assert ok and body["rechecks_scheduled"] == 1, body
    account.client("kms").create_grant(KeyId=seeded.domain_key, GranteePrincipal=ROLE_ARN,
                                       Operations=["Decrypt", "GenerateDataKey"])
    ok, body = fn.invoke(now_event(scenario, seeded, "kms-create-grant.json"))
    assert ok and body["findings"] == [], body
    time.sleep(6.2)
    assert deliver_rechecks() == 1
    assert pages(account, seeded) == []


def guard_cli(env, *args):
    result = subprocess.run([binary("connect-slr-guard"), *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_mute_silences_a_drift_then_releases_it(account, ledger_env):
    seeded = seed(account, spec_for("key-disabled"))
    mute_id = guard_cli(ledger_env, "mute", "--rule", "KMS_KEY_UNUSABLE", "--for", "10s",
                        "--reason", "key rotation planned").strip()
    [listed] = json.loads(guard_cli(ledger_env, "mutes", "--format", "json"))
    assert (listed["id"], listed["active"], listed["reason"]) == (mute_id, True, "key rotation planned")
    assert listed["by"].startswith("arn:aws:"), "who set it, from STS"
    report = sweep(ledger_env)
    assert report["muted"] == 1 and report["alerts_published"] == 0, report
    assert pages(account, seeded) == []
    time.sleep(max(0.0, listed["until"] - time.time()) + 0.5)
    sweep(ledger_env)
    assert statuses(pages(account, seeded)) == [("OPEN", "KMS_KEY_UNUSABLE")], "paged once the mute ended"


def test_a_drift_opened_before_its_mute_still_resolves(account, ledger_env):
    seeded = seed(account, spec_for("key-disabled"))
    sweep(ledger_env)
    pages(account, seeded)
    mute_id = guard_cli(ledger_env, "mute", "--rule", "KMS_KEY_UNUSABLE", "--resource", seeded.domain_key,
                        "--for", "1h", "--reason", "known").strip()
    [open_finding] = json.loads(guard_cli(ledger_env, "findings", "--format", "json"))
    assert (open_finding["rule"], open_finding["muted"]) == ("KMS_KEY_UNUSABLE", True)
    account.client("kms").enable_key(KeyId=seeded.domain_key.rsplit("/", 1)[1])
    sweep(ledger_env)
    assert statuses(pages(account, seeded)) == [("RESOLVED", "KMS_KEY_UNUSABLE")]
    guard_cli(ledger_env, "unmute", mute_id)
    assert json.loads(guard_cli(ledger_env, "mutes", "--format", "json")) == []
    assert json.loads(guard_cli(ledger_env, "findings", "--format", "json")) == []


@pytest.mark.parametrize("args, says", [
    (["mute", "--rule", "NOT_A_RULE", "--for", "1h", "--reason", "x"], "not a rule"),
    (["mute", "--rule", "KMS_KEY_UNUSABLE", "--for", "1 hour", "--reason", "x"], "--for"),
    (["mute", "--rule", "KMS_KEY_UNUSABLE", "--until", "2001-01-01T00:00:00Z", "--reason", "x"], "already be over"),
    (["unmute", "no-such-id"], "no mute"),
])
def test_bad_ledger_commands_say_what_is_wrong_and_exit_2(ledger_env, args, says):
    result = subprocess.run([binary("connect-slr-guard"), *args], env=ledger_env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and says in result.stderr, (result.returncode, result.stderr)


def test_ledger_commands_need_the_ledger(guard_env):
    result = subprocess.run([binary("connect-slr-guard"), "mutes"], env=guard_env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "LEDGER_TABLE" in result.stderr, result.stderr


def test_a_key_event_on_a_key_no_instance_uses_makes_no_connect_call(account, ledger_env, proxy):
    scenario = SCENARIOS["healthy"]
    seeded = seed(account, spec_for(scenario.name))
    unused = account.client("kms").create_key(Description="an EBS volume's key")["KeyMetadata"]["KeyId"]
    event = event_for(scenario, seeded, sample_event("kms-revoke-grant.json"))
    event["detail"]["requestParameters"]["keyId"] = unused
    event_file = OUT / "ledger-unused-key.json"
    event_file.write_text(json.dumps(event))

    def check_event():
        proxy.set({})  # resets the call log
        result = subprocess.run([binary("connect-slr-guard"), "check-event", str(event_file), "--publish"],
                                env=ledger_env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return [op for service, op, _ in proxy.calls if service == "connect"]

    assert check_event(), "before a sweep has built the key index, the instances are read"
    sweep(ledger_env)
    assert check_event() == [], "a complete index says no instance uses the key"
    used = event_for(scenario, seeded, sample_event("kms-revoke-grant.json"))  # the domain key
    event_file.write_text(json.dumps(used))
    assert check_event(), "a key an instance uses is still checked"


def test_a_role_still_there_after_delete_service_linked_role_is_rechecked(account, settling):
    fn, _ = settling
    scenario = SCENARIOS["slr-deletion-pending"]
    seeded = seed(account, spec_for(scenario.name))
    ok, body = fn.invoke(event_for(scenario, seeded, sample_event("iam-delete-service-linked-role.json")))
    assert ok, body
    assert body["rechecks_scheduled"] == 1, "the deletion is asynchronous: look again"
    assert statuses(pages(account, seeded)) == [("OPEN", "CONNECT_SLR_MISSING")]


def test_findings_of_an_instance_the_sweep_no_longer_lists_resolve_as_deleted(account, ledger_env, proxy):
    seeded = seed(account, spec_for("access-denied-one-instance"))
    proxy.set(SCENARIOS["access-denied-one-instance"].faults)
    sweep(ledger_env)
    assert statuses(pages(account, seeded)) == [("OPEN", "CHECK_INCOMPLETE")]
    proxy.set({})
    state = connect_state(spec_for("healthy"), seeded.domain_key, seeded.storage_key)
    http_json("PUT", f"{account.double_url}/_double/state", state)  # the other instance is gone
    sweep(ledger_env)
    found = pages(account, seeded)
    assert statuses(found) == [("RESOLVED", "CHECK_INCOMPLETE")]
    assert found[0][4]["resolved_reason"] == "instance deleted"
    assert found[0][2] == instance_arn(OTHER_INSTANCE_ID)
