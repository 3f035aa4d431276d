"""The work queue end to end, wired as template.yaml wires it: EventBridge
puts each event (and the hourly sweep) on an SQS FIFO queue in the message
group `<account>:<region>`, Lambda's SQS event source hands the real Lambda
binary one message at a time, and a re-check that comes due on the standard
re-check queue joins the work queue in its account's group. Real SQS, SNS,
DynamoDB in the emulator; the function over the Runtime API."""

import json
import time

import pytest

from conftest import OUT, binary, sample_event
from local_aws import ACCOUNT, REGION
from runtime_api import LambdaFunction
from scenarios import SCENARIOS, seed, spec_for
from test_ledger import ledger_env, now_event, pages, statuses  # noqa: F401  (ledger_env is a fixture)

GROUP = f"{ACCOUNT}:{REGION}"


def queue(sqs, name, **attributes):
    url = sqs.create_queue(QueueName=name, Attributes={k: str(v) for k, v in attributes.items()})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def as_eventbridge_target(sqs, url, event):
    """What an EventBridge rule with this queue as its target sends: the event
    as the body, in the template's message group (content-based dedup)."""
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event), MessageGroupId=GROUP)


def receive(sqs, url, count=10, wait=0):
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=count, WaitTimeSeconds=wait,
                               AttributeNames=["All"]).get("Messages", [])


def record(message, arn):
    """One record as Lambda's SQS event source hands it over."""
    return {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
            "attributes": message.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": REGION}


@pytest.fixture()
def wired(account, ledger_env):  # noqa: F811  (the imported fixture)
    """The function with the template's queues: FIFO work queue, re-check queue."""
    sqs = account.client("sqs")
    work = queue(sqs, "guard-work.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    rechecks = queue(sqs, "guard-rechecks")
    env = {**ledger_env, "WORK_QUEUE_URL": work[0], "RECHECK_QUEUE_URL": rechecks[0], "SETTLE_WINDOW": "3s"}
    fn = LambdaFunction(binary("connect-slr-guard-lambda"), env, log_path=OUT / "lambda-work.log")
    fn.wait_ready()
    yield fn, sqs, work, rechecks
    fn.close()


def test_the_sweep_runs_from_the_work_queue_and_pages(account, wired):
    fn, sqs, (work_url, work_arn), _ = wired
    seeded = seed(account, spec_for("key-disabled"))
    as_eventbridge_target(sqs, work_url, json.loads(sample_event("scheduled-sweep.json")))
    [message] = receive(sqs, work_url)
    assert message["Attributes"]["MessageGroupId"] == GROUP
    ok, body = fn.invoke({"Records": [record(message, work_arn)]})
    assert ok and body == {"batchItemFailures": []}, body
    assert statuses(pages(account, seeded)) == [("OPEN", "KMS_KEY_UNUSABLE")]


def test_a_due_recheck_joins_the_work_queue_in_its_accounts_group_and_pages_there(account, wired):
    fn, sqs, (work_url, work_arn), (recheck_url, recheck_arn) = wired
    scenario = SCENARIOS["profiles-grant-missing"]
    seeded = seed(account, spec_for(scenario.name))
    as_eventbridge_target(sqs, work_url, now_event(scenario, seeded, "kms-revoke-grant.json"))
    [event] = receive(sqs, work_url)
    ok, body = fn.invoke({"Records": [record(event, work_arn)]})
    assert ok and body == {"batchItemFailures": []}, body
    assert pages(account, seeded) == [], "held while the revocation settles"
    sqs.delete_message(QueueUrl=work_url, ReceiptHandle=event["ReceiptHandle"])

    [due] = receive(sqs, recheck_url, wait=6)
    ok, body = fn.invoke({"Records": [record(due, recheck_arn)]})
    assert ok and body == {"batchItemFailures": []}, body
    assert pages(account, seeded) == [], "a due re-check is queued, not run, beside the account's other passes"

    [queued] = receive(sqs, work_url)
    assert queued["Attributes"]["MessageGroupId"] == GROUP
    assert json.loads(queued["Body"])["schema"] == "connect-slr-guard/recheck/v1"
    ok, body = fn.invoke({"Records": [record(queued, work_arn)]})
    assert ok and body == {"batchItemFailures": []}, body
    assert statuses(pages(account, seeded)) == [("OPEN", "PROFILES_KMS_GRANT_MISSING")]


def test_a_failed_pass_holds_the_rest_of_its_fifo_batch_and_a_batch_that_all_failed_fails_the_invocation(
        account, wired, proxy):
    fn, sqs, (work_url, work_arn), _ = wired
    seed(account, spec_for("key-disabled"))
    ignored, sweep = json.loads(sample_event("ignored-s3-put-object.json")), json.loads(
        sample_event("scheduled-sweep.json"))
    for event in (ignored, sweep, ignored):
        as_eventbridge_target(sqs, work_url, {**event, "id": f"{event['id']}-{time.monotonic_ns()}"})
    messages = receive(sqs, work_url)
    assert len(messages) == 3
    proxy.set({"sns": {"mode": "5xx"}})
    ok, body = fn.invoke({"Records": [record(m, work_arn) for m in messages]})
    # The sweep could not page; the event after it waits with it, to keep the group's order.
    assert ok and body == {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages[1:]]}, body
    ok, body = fn.invoke({"Records": [record(messages[1], work_arn)]})
    assert not ok and body["errorType"] == "WorkFailed", body


def test_a_message_that_is_not_work_is_dropped_not_retried(wired):
    fn, _, (_, work_arn), _ = wired
    junk = {"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": "{\"hello\": 1}", "MD5OfBody": "x"}
    ok, body = fn.invoke({"Records": [record(junk, work_arn)]})
    assert ok and body == {"batchItemFailures": []}, body


def test_check_event_replays_any_body_from_the_guards_queues(account, guard_env, tmp_path):
    """What README tells on-call to do with a dead-lettered message: a re-check
    envelope replays as the event it carries."""
    import subprocess

    scenario = SCENARIOS["key-disabled"]
    seeded = seed(account, spec_for(scenario.name))
    event = now_event(scenario, seeded, "kms-disable-key.json")
    bodies = {"event": event, "recheck": {"schema": "connect-slr-guard/recheck/v1", "attempt": 2, "event": event}}
    findings = {}
    for name, body in bodies.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(body))
        result = subprocess.run([binary("connect-slr-guard"), "check-event", str(path), "--format", "json"],
                                env=guard_env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr
        findings[name] = sorted(f["rule"] for f in json.loads(result.stdout)["findings"])
    assert findings["event"] == findings["recheck"] == ["KMS_KEY_UNUSABLE"]
