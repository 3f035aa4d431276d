"""Outputs beyond e-mail (issue 14), end to end through the real binaries:
Security Hub (moto's BatchImportFindings/GetFindings), the chat topic (read
back from an SQS subscription), the EMF metrics document on the Lambda's
stdout, the CLI's asff/chat/sarif formats, and the offline snapshot round
trip (`audit --save-snapshot`, then `evaluate`)."""

import json
import re
import time
from datetime import datetime

import jsonschema  # pinned in bench/requirements.txt
import pytest

from conftest import OUT, binary, sample_event
from local_aws import ACCOUNT, REGION, http_json
from runtime_api import LambdaFunction
from scenarios import (OTHER_INSTANCE_ID, SCENARIOS, connect_state, event_for, instance_arn, seed, spec_for,
                       topic_with_queue)
from test_e2e import cli, drain
from test_ledger import ledger_env  # noqa: F401  (a fixture: a fresh ledger table, LEDGER_TABLE set)

PRODUCT_ARN = f"arn:aws:securityhub:{REGION}:{ACCOUNT}:product/{ACCOUNT}/default"
CHAT_TOPIC = "connect-slr-guard-chat"
CHAT_QUEUE = "chat-channel"


# --- the real Lambda, started per test with the outputs it needs -------------------------------------------------

class Stdout:
    """The Lambda process's stdout (JSON logs and EMF documents), read a pass at a time."""

    def __init__(self, path):
        self.path, self.offset = path, 0

    def new_lines(self):
        """The lines written since the last call. The function writes a pass's EMF line before it answers
        the invocation (Rust's stdout is line-buffered), so after `invoke` returns, the line is in the file."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode().splitlines()


@pytest.fixture()
def start_lambda(guard_env):
    """start(name, **settings) -> (function, its stdout): the real Lambda with `settings` over the bench's."""
    started = []

    def start(name, **settings):
        out = OUT / f"lambda-outputs-{name}.stdout"
        fn = LambdaFunction(binary("connect-slr-guard-lambda"), {**guard_env, **settings},
                            log_path=OUT / f"lambda-outputs-{name}.log", stdout_path=out)
        started.append(fn)
        fn.wait_ready()
        return fn, Stdout(out)

    yield start
    for fn in started:
        fn.close()


def sweep_event():
    return json.loads(sample_event("scheduled-sweep.json"))


def invoke_ok(fn, event):
    ok, body = fn.invoke(event)
    assert ok, f"invocation failed: {body}"
    return body


def pages(account, seeded):
    """The alert documents SNS delivered to on-call since the last look."""
    return [json.loads(m["Message"]) for m in drain(account.client("sqs"), seeded.queue_url)]


def enable_key(account, key_arn):
    """Fixes a key-disabled drift (moto takes the key id, not the ARN)."""
    account.client("kms").enable_key(KeyId=key_arn.rsplit("/", 1)[1])


def mixed_drift():
    """Drifts of three severities at once: a CRITICAL (the domain key disabled), a HIGH (the SLR's managed policy
    detached: one finding per instance using the role) and, with MIXED_FAULTS on the proxy, a CHECK_INCOMPLETE
    (the second instance's storage cannot be read)."""
    spec = spec_for("access-denied-one-instance")
    spec.domain_key_state = "Disabled"
    spec.managed_policy = False
    return spec


MIXED_FAULTS = SCENARIOS["access-denied-one-instance"].faults
MIXED_RULES = ["CHECK_INCOMPLETE", "CONNECT_SLR_POLICY_DETACHED", "CONNECT_SLR_POLICY_DETACHED", "KMS_KEY_UNUSABLE"]


def instant(text):
    """An RFC 3339 time (any number of fraction digits) as an aware datetime."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text)
    assert m, f"not RFC 3339 UTC: {text!r}"
    fraction = (m.group(2) or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{m.group(1)}.{fraction}+00:00")


# --- Security Hub: the ASFF a finding must carry ----------------------------------------------------------------

# Documented ASFF limits (AwsSecurityFinding in the Security Hub API reference).
MAX_TITLE, MAX_DESCRIPTION, MAX_RECOMMENDATION = 256, 1024, 512
MAX_PRODUCT_FIELDS, MAX_PRODUCT_FIELD_KEY, MAX_PRODUCT_FIELD_VALUE = 50, 128, 2048
MAX_RESOURCES, MAX_ID = 32, 512
TYPE_NAMESPACES = {"Software and Configuration Checks", "TTPs", "Effects", "Unusual Behaviors",
                   "Sensitive Data Identifications"}
REQUIRED_ASFF = ["SchemaVersion", "Id", "ProductArn", "GeneratorId", "AwsAccountId", "Types", "CreatedAt",
                 "UpdatedAt", "Severity", "Title", "Description", "Resources"]


def hub_findings(account):
    """Every finding Security Hub holds from the guard's product, by Id (moto's GetFindings ignores filters)."""
    hub = account.client("securityhub")
    found, token = [], None
    while True:
        page = hub.get_findings(MaxResults=100, **({"NextToken": token} if token else {}))
        found += page["Findings"]
        token = page.get("NextToken")
        if not token:
            break
    return {f["Id"]: f for f in found if f.get("ProductArn") == PRODUCT_ARN}


def check_asff(f, catalogue):
    """Checks one imported finding against ASFF's required fields and documented limits; returns its fingerprint."""
    missing = [k for k in REQUIRED_ASFF if k not in f]
    assert not missing, f"ASFF finding lacks required {missing}: {f}"
    assert f["SchemaVersion"] == "2018-10-08"
    assert f["ProductArn"] == PRODUCT_ARN and f["AwsAccountId"] == ACCOUNT
    m = re.fullmatch(r"connect-slr-guard/([0-9a-f]{32})", f["Id"])
    assert m and len(f["Id"]) <= MAX_ID, f["Id"]
    fingerprint = m.group(1)
    rule = f["GeneratorId"]
    assert rule in catalogue, f"GeneratorId {rule!r} is not a rule"
    assert f["Severity"]["Label"] == catalogue[rule]["severity"]
    assert f["FindingProviderFields"]["Severity"]["Label"] == f["Severity"]["Label"]
    assert 1 <= len(f["Types"]) <= 50 and f["FindingProviderFields"]["Types"] == f["Types"]
    for kind in f["Types"]:
        assert kind.split("/")[0] in TYPE_NAMESPACES and len(kind.split("/")) <= 3, kind
    assert instant(f["CreatedAt"]) <= instant(f["UpdatedAt"])
    assert 0 < len(f["Title"]) <= MAX_TITLE and rule in f["Title"]
    assert 0 < len(f["Description"]) <= MAX_DESCRIPTION
    fix = f["Remediation"]["Recommendation"]["Text"]
    assert 0 < len(fix) <= MAX_RECOMMENDATION
    assert 1 <= len(f["Resources"]) <= MAX_RESOURCES
    for resource in f["Resources"]:
        assert resource["Type"] and resource["Id"].startswith("arn:aws:"), resource
        assert (resource["Partition"], resource["Region"]) == ("aws", REGION)
    fields = f["ProductFields"]
    assert len(fields) <= MAX_PRODUCT_FIELDS
    for key, value in fields.items():
        assert isinstance(value, str) and len(key) <= MAX_PRODUCT_FIELD_KEY and len(value) <= MAX_PRODUCT_FIELD_VALUE
    assert fields["ProviderName"] == "connect-slr-guard"
    assert fields["connect-slr-guard/Rule"] == rule and fields["connect-slr-guard/Fingerprint"] == fingerprint
    archived = f["RecordState"] == "ARCHIVED"
    assert f["RecordState"] in ("ACTIVE", "ARCHIVED")
    expected = "PASSED" if archived else ("NOT_AVAILABLE" if rule == "CHECK_INCOMPLETE" else "FAILED")
    assert f["Compliance"]["Status"] == expected, (rule, f["RecordState"], f["Compliance"])
    return fingerprint


def clipped_from(text, full):
    """`text` is `full`, or `full` cut with an ellipsis."""
    return text == full or (text.endswith("…") and full.startswith(text[:-1]))


def test_security_hub_follows_a_drift_from_active_to_archived(account, ledger_env, start_lambda, catalogue):
    seeded = seed(account, spec_for("key-disabled"))
    fn, _ = start_lambda("hub-lifecycle", **ledger_env, SECURITY_HUB="on")

    body = invoke_ok(fn, sweep_event())
    [page] = pages(account, seeded)
    assert body["security_hub_imported"] == 1, body
    [opened] = hub_findings(account).values()
    assert check_asff(opened, catalogue) == page["fingerprint"]
    assert (opened["RecordState"], opened["Compliance"]["Status"]) == ("ACTIVE", "FAILED")
    assert opened["GeneratorId"] == page["rule"] == "KMS_KEY_UNUSABLE"
    assert opened["Resources"][0]["Id"] == page["resource_arn"] == seeded.domain_key
    assert page["instance_arn"] in [r["Id"] for r in opened["Resources"]]
    assert opened["Remediation"]["Recommendation"]["Text"] == page["remediation"]
    assert opened["Description"] == page["summary"]
    assert opened["UpdatedAt"] == page["observed_at"], "UpdatedAt is the pass's observed_at"

    body = invoke_ok(fn, sweep_event())
    assert body["alerts_published"] == 0 and pages(account, seeded) == [], "the ledger pages once"
    assert body["security_hub_imported"] == 1, "a drift still there is re-imported on every pass"
    [updated] = hub_findings(account).values()
    check_asff(updated, catalogue)
    assert updated["Id"] == opened["Id"]
    assert instant(updated["UpdatedAt"]) > instant(opened["UpdatedAt"])
    assert updated["RecordState"] == "ACTIVE"

    enable_key(account, seeded.domain_key)
    body = invoke_ok(fn, sweep_event())
    [resolved_page] = pages(account, seeded)
    assert (resolved_page["status"], body["resolved"], body["security_hub_imported"]) == ("RESOLVED", 1, 1), body
    [archived] = hub_findings(account).values()
    check_asff(archived, catalogue)
    assert archived["Id"] == opened["Id"]
    assert (archived["RecordState"], archived["Compliance"]["Status"]) == ("ARCHIVED", "PASSED")
    assert archived["ProductFields"]["connect-slr-guard/Status"] == "RESOLVED"
    assert instant(archived["UpdatedAt"]) > instant(updated["UpdatedAt"])

    body = invoke_ok(fn, sweep_event())
    assert body["security_hub_imported"] == 0, "nothing left to import once archived"
    assert hub_findings(account) == {archived["Id"]: archived}

    created = [instant(f["CreatedAt"]) for f in (opened, updated, archived)]
    assert created == [instant(page["first_seen"])] * 3, \
        f"CreatedAt is when the drift was first seen (the page's first_seen), on every import: {created}"


def test_every_imported_finding_has_the_required_fields_within_the_limits(account, proxy, guard_env, catalogue):
    """Drifts of three kinds at once, one a CHECK_INCOMPLETE (NOT_AVAILABLE), on an instance whose alias and service
    role are far longer than AWS allows: what the guard sends stays within ASFF's limits, cut, not rejected."""
    seeded = seed(account, mixed_drift())
    proxy.set(MIXED_FAULTS)
    state = connect_state(mixed_drift(), seeded.domain_key, seeded.storage_key)
    state["instances"][0]["InstanceAlias"] = "a" * 3000
    state["instances"][0]["ServiceRole"] = (f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/connect.amazonaws.com/"
                                            f"AWSServiceRoleForAmazonConnect_{'x' * 700}")
    http_json("PUT", f"{account.double_url}/_double/state", state)

    result = cli(["audit", "--format", "json", "--publish", "--security-hub", "on"], guard_env)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    imported = hub_findings(account)
    assert report["security_hub_imported"] == len(imported) == len(report["findings"]) >= 3
    by_fingerprint = {f["fingerprint"]: f for f in report["findings"]}
    assert any(len(f["summary"]) > MAX_DESCRIPTION for f in report["findings"]), "the test must exceed the limits"
    assert any(len(f["remediation"]) > MAX_RECOMMENDATION for f in report["findings"])
    for finding in imported.values():
        source = by_fingerprint[check_asff(finding, catalogue)]
        assert finding["GeneratorId"] == source["rule"]
        assert clipped_from(finding["Description"], source["summary"])
        assert clipped_from(finding["Remediation"]["Recommendation"]["Text"], source["remediation"])
    assert {f["GeneratorId"]: f["Compliance"]["Status"] for f in imported.values()}["CHECK_INCOMPLETE"] \
        == "NOT_AVAILABLE"


def test_a_drift_held_by_the_settle_window_is_not_imported(account, ledger_env, start_lambda):
    sqs = account.client("sqs")
    recheck_queue = sqs.create_queue(QueueName="connect-slr-guard-rechecks")["QueueUrl"]
    fn, _ = start_lambda("hub-held", **ledger_env, SECURITY_HUB="on", SETTLE_WINDOW="60s",
                         RECHECK_QUEUE_URL=recheck_queue)
    scenario = SCENARIOS["profiles-grant-missing"]
    seeded = seed(account, spec_for(scenario.name))
    event = event_for(scenario, seeded, sample_event("kms-revoke-grant.json"))
    event["detail"]["eventTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = invoke_ok(fn, event)
    assert (body["held"], body["alerts_published"], body["security_hub_imported"]) == (1, 0, 0), body
    assert body["findings"], "the report still names the drift"
    assert hub_findings(account) == {}, "a held drift reaches neither on-call nor Security Hub"


# --- chat: Amazon Q Developer in chat applications custom notifications ---------------------------------------------

# The documented event schema (custom notifications, "Event schema" and "Parameter details"), held closed
# (additionalProperties: false) so that an invented key fails here rather than in a chat channel.
CHAT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "source", "content", "metadata"],
    "properties": {
        "version": {"const": "1.0"},
        "source": {"const": "custom"},
        "id": {"type": "string", "minLength": 1},
        "content": {
            "type": "object",
            "additionalProperties": False,
            "required": ["textType", "title", "description", "keywords"],
            "properties": {
                "textType": {"const": "client-markdown"},
                "title": {"type": "string", "minLength": 1},
                "description": {"type": "string", "minLength": 1},
                "nextSteps": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "keywords": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            },
        },
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["threadId", "summary", "eventType"],
            "properties": {
                "threadId": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "summary": {"type": "string", "minLength": 1},
                "eventType": {"enum": ["OPEN", "REMINDER", "RESOLVED"]},
                "relatedResources": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "additionalContext": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    },
}


def check_chat(note, page):
    """Checks one chat notification against the schema and against the page it echoes."""
    errors = sorted(jsonschema.Draft202012Validator(CHAT_SCHEMA).iter_errors(note), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    content, meta = note["content"], note["metadata"]
    status, rule, severity = page["status"], page["rule"], page["severity"]
    assert meta["threadId"] == page["fingerprint"], "one thread per drift"
    assert meta["eventType"] == status
    assert f"[{severity}] {rule} ({status})" in content["title"]
    assert rule in meta["summary"] and status in meta["summary"]
    assert content["description"].startswith(page["summary"])
    assert content["keywords"] == [rule, severity, ACCOUNT]
    if status == "RESOLVED":
        assert "nextSteps" not in content, "nothing to fix once resolved"
    else:
        assert content["nextSteps"] == [f"Fix: `{page['remediation']}`"]
    assert meta["relatedResources"][0] == page["resource_arn"]
    assert meta["additionalContext"]["fingerprint"] == page["fingerprint"]


def chat_notes(account, queue_url):
    """The notifications SNS delivered to the chat channel's queue: each the plain Message of its envelope."""
    notes = []
    for envelope in drain(account.client("sqs"), queue_url):
        assert envelope["Type"] == "Notification"
        notes.append(json.loads(envelope["Message"]))
    return notes


def test_chat_notifications_thread_a_drift_from_open_to_resolved(account, ledger_env, start_lambda):
    chat_topic, chat_queue = topic_with_queue(account, CHAT_TOPIC, CHAT_QUEUE)
    seeded = seed(account, spec_for("key-disabled"))
    fn, _ = start_lambda("chat", **ledger_env, CHAT_TOPIC_ARN=chat_topic, REMINDER_INTERVAL="2s")

    def one_pass(expected_status):
        invoke_ok(fn, sweep_event())
        [page] = pages(account, seeded)
        [note] = chat_notes(account, chat_queue)
        assert page["status"] == expected_status
        check_chat(note, page)
        return note

    opened = one_pass("OPEN")
    invoke_ok(fn, sweep_event())
    assert pages(account, seeded) == [] and chat_notes(account, chat_queue) == [], "no page, no chat"
    time.sleep(2.2)
    reminded = one_pass("REMINDER")
    enable_key(account, seeded.domain_key)
    resolved = one_pass("RESOLVED")
    thread = {n["metadata"]["threadId"] for n in (opened, reminded, resolved)}
    assert len(thread) == 1, "OPEN, REMINDER and RESOLVED form one thread"
    assert len({n["id"] for n in (opened, reminded, resolved)}) == 3, "each message has its own id"


# --- EMF: one metrics document on stdout per pass --------------------------------------------------------------------

CLOUDWATCH_UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes", "Bits",
    "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second", "Kilobytes/Second",
    "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
    "Gigabits/Second", "Terabits/Second", "Count/Second", "None"}
# metric -> the fault proxy's name for the service whose requests it counts (SigV4 scope)
CALL_METRICS = {"ConnectCalls": "connect", "CustomerProfilesCalls": "profile", "IamCalls": "iam", "KmsCalls": "kms",
                "KinesisCalls": "kinesis", "FirehoseCalls": "firehose", "SnsCalls": "sns",
                "DynamoDbCalls": "dynamodb", "SqsCalls": "sqs", "StsCalls": "sts", "SecurityHubCalls": "securityhub"}
PASS_METRICS = {"FindingsCritical", "FindingsHigh", "FindingsMedium", "FindingsLow", "NewFindings",
                "ResolvedFindings", "MutedFindings", "ChecksIncomplete", "InstancesChecked", "AlertsPublished",
                "ThrottledRetries", "PassDuration", *CALL_METRICS}


def emf_documents(lines):
    """The EMF documents among a pass's stdout lines. Every line must be a JSON object (the logs are JSON too),
    and metrics must be a line of their own: a log record that carries one is hidden from CloudWatch."""
    docs = []
    for line in lines:
        record = json.loads(line)
        assert isinstance(record, dict), line
        if "_aws" in record:
            docs.append(record)
        else:
            assert "CloudWatchMetrics" not in line, f"EMF wrapped in a log record: {line[:300]}"
    return docs


def check_emf(doc, sweep):
    """Checks one document against the EMF specification and the guard's metric set; returns metric -> value."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and not isinstance(meta["Timestamp"], bool)
    [directive] = meta["CloudWatchMetrics"]
    assert directive["Namespace"] == "ConnectSlrGuard"
    assert directive["Dimensions"] == [[]], "no dimensions: a fixed number of custom metrics"
    names = [m["Name"] for m in directive["Metrics"]]
    assert len(names) == len(set(names)) and len(names) <= 100
    assert set(names) == PASS_METRICS | ({"SweepChecksIncomplete"} if sweep else set())
    values = {}
    for definition in directive["Metrics"]:
        assert set(definition) <= {"Name", "Unit", "StorageResolution"}, definition
        assert definition["Unit"] in CLOUDWATCH_UNITS
        expected_unit = "Milliseconds" if definition["Name"] == "PassDuration" else "Count"
        assert definition["Unit"] == expected_unit, definition
        value = doc[definition["Name"]]
        assert isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0, (definition, value)
        values[definition["Name"]] = value
    assert (doc["account"], doc["region"]) == (ACCOUNT, REGION)
    assert doc["trigger"] == ("schedule" if sweep else "event")
    return values


def by_severity(findings):
    return {f"Findings{s.title()}": sum(f["severity"] == s for f in findings)
            for s in ("CRITICAL", "HIGH", "MEDIUM", "LOW")}


def test_each_pass_writes_one_emf_document_that_matches_it(account, proxy, ledger_env, start_lambda):
    seeded = seed(account, mixed_drift())
    fn, stdout = start_lambda("emf", **ledger_env, SECURITY_HUB="on", METRICS="on")
    stdout.new_lines()  # the init logs

    proxy.set(MIXED_FAULTS)  # also resets the proxy's call log
    before = time.time()
    body = invoke_ok(fn, sweep_event())
    after = time.time()
    [doc] = emf_documents(stdout.new_lines())
    metrics = check_emf(doc, sweep=True)
    assert before * 1000 - 1 <= doc["_aws"]["Timestamp"] <= after * 1000 + 1
    assert sorted(f["rule"] for f in body["findings"]) == MIXED_RULES
    assert {k: metrics[k] for k in by_severity(body["findings"])} == by_severity(body["findings"])
    assert metrics["FindingsCritical"] >= 1 and metrics["FindingsHigh"] >= 1 and metrics["FindingsMedium"] >= 1
    assert metrics["NewFindings"] == metrics["AlertsPublished"] == body["alerts_published"] == len(MIXED_RULES)
    assert metrics["ChecksIncomplete"] == metrics["SweepChecksIncomplete"] == body["checks_incomplete"] == 1
    assert metrics["InstancesChecked"] == body["instances_checked"]
    assert (metrics["ResolvedFindings"], metrics["MutedFindings"], metrics["ThrottledRetries"]) == (0, 0, 0)
    assert 0 < metrics["PassDuration"] <= (after - before) * 1000
    assert metrics["ConnectCalls"] > 0 and metrics["SecurityHubCalls"] >= 1
    sent = {service: 0 for service in CALL_METRICS.values()}
    for service, _, _ in proxy.calls:
        sent[service] = sent.get(service, 0) + 1
    assert {m: metrics[m] for m in CALL_METRICS} == {m: sent[s] for m, s in CALL_METRICS.items()}, \
        "each service's calls, as the proxy saw them"
    assert set(sent) <= set(CALL_METRICS.values()), f"calls to a service no metric counts: {sent}"

    # A targeted event after the key is enabled again: the drift resolves; no sweep-only metric.
    proxy.set(MIXED_FAULTS)
    enable_key(account, seeded.domain_key)
    body = invoke_ok(fn, event_for(SCENARIOS["key-disabled"], seeded, sample_event("kms-enable-key.json")))
    [doc] = emf_documents(stdout.new_lines())
    metrics = check_emf(doc, sweep=False)
    assert metrics["ResolvedFindings"] == body["resolved"] == 1, body
    assert (metrics["NewFindings"], metrics["AlertsPublished"]) == (0, 1), "the RESOLVED page"
    assert {k: metrics[k] for k in by_severity(body["findings"])} == by_severity(body["findings"])

    # Throttled requests the SDK retried are counted, as requests and as ThrottledRetries.
    proxy.set({**MIXED_FAULTS, "iam": {"mode": "throttle", "first": 2}})
    invoke_ok(fn, sweep_event())
    [doc] = emf_documents(stdout.new_lines())
    metrics = check_emf(doc, sweep=True)
    assert metrics["ThrottledRetries"] == 2
    assert metrics["IamCalls"] == sum(service == "iam" for service, _, _ in proxy.calls)

    # An event the guard ignores runs no pass, so writes no metrics.
    ok, body = fn.invoke(json.loads(sample_event("ignored-s3-put-object.json")))
    assert ok and "ignored" in body, body
    assert emf_documents(stdout.new_lines()) == []


def test_metrics_are_off_by_default(account, start_lambda):
    seed(account, spec_for("key-disabled"))
    fn, stdout = start_lambda("emf-off")
    invoke_ok(fn, sweep_event())
    lines = stdout.new_lines()
    assert any("pass evaluated" in line for line in lines), "the pass ran and logged"
    assert emf_documents(lines) == [], "no METRICS=on, no EMF"


# --- CLI formats ----------------------------------------------------------------------------------------------------

SARIF_LEVELS = {"error", "warning", "note"}
LEVEL_OF = {"CRITICAL": "error", "HIGH": "error", "MEDIUM": "warning", "LOW": "note"}


def check_sarif(doc, catalogue, report):
    """Checks a SARIF 2.1.0 log's structure, its rules against the catalogue and its results against `report`."""
    assert doc["version"] == "2.1.0" and "sarif" in doc["$schema"] and "2.1.0" in doc["$schema"]
    [run] = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "connect-slr-guard"
    rules = driver["rules"]
    assert [r["id"] for r in rules] == list(catalogue), "the whole catalogue, in its order"
    for r in rules:
        assert r["fullDescription"]["text"] == catalogue[r["id"]]["description"]
        assert r["defaultConfiguration"]["level"] == LEVEL_OF[catalogue[r["id"]]["severity"]]
    by_fingerprint = {f["fingerprint"]: f for f in report["findings"]}
    seen = set()
    for result in run["results"]:
        assert result["ruleId"] in catalogue, result["ruleId"]
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"], "ruleIndex points at the result's rule"
        assert result["level"] in SARIF_LEVELS
        [fingerprint] = result["partialFingerprints"].values()
        finding = by_fingerprint[fingerprint]
        seen.add(fingerprint)
        assert result["ruleId"] == finding["rule"] and result["level"] == LEVEL_OF[finding["severity"]]
        assert finding["remediation"] in result["message"]["text"], "each result carries its fix"
        assert finding["summary"] in result["message"]["text"]
        [location] = result["locations"]
        assert location["physicalLocation"]["artifactLocation"]["uri"] == finding["resource_arn"]
    assert seen == set(by_fingerprint), "one result per finding"


def without_times(asff):
    return sorted(({k: v for k, v in f.items() if k not in ("CreatedAt", "UpdatedAt")} for f in asff),
                  key=lambda f: f["Id"])


def test_cli_asff_prints_exactly_what_security_hub_receives(account, proxy, guard_env, catalogue):
    seed(account, mixed_drift())
    proxy.set(MIXED_FAULTS)
    dry = cli(["audit", "--format", "asff"], guard_env)
    assert dry.returncode == 1, dry.stderr
    assert hub_findings(account) == {}, "a dry run sends nothing"
    sent = cli(["audit", "--format", "asff", "--publish", "--security-hub", "on"], guard_env)
    assert sent.returncode == 1, sent.stderr
    imported = sorted(hub_findings(account).values(), key=lambda f: f["Id"])
    assert sorted(f["GeneratorId"] for f in imported) == MIXED_RULES
    for finding in imported:
        check_asff(finding, catalogue)
    assert sorted(json.loads(sent.stdout), key=lambda f: f["Id"]) == imported, "the same pass: byte for byte"
    assert without_times(json.loads(dry.stdout)) == without_times(imported), "a dry run: all but the pass's time"


def test_cli_asff_under_a_ledger_prints_what_the_pass_imported(account, ledger_env):
    """With --publish under a ledger, what Security Hub receives follows the drift's lifecycle (CreatedAt = first
    seen; a resolved drift archived): `--format asff` must print that, not a fresh ACTIVE finding per drift."""
    seeded = seed(account, spec_for("key-disabled"))

    def publish_pass():
        result = cli(["audit", "--format", "asff", "--publish", "--security-hub", "on"], ledger_env)
        assert result.returncode in (0, 1), result.stderr
        return json.loads(result.stdout)

    first = publish_pass()
    assert first == list(hub_findings(account).values())
    second = publish_pass()
    assert second == list(hub_findings(account).values()), "a drift still there: as re-imported"
    enable_key(account, seeded.domain_key)
    third = publish_pass()
    [archived] = hub_findings(account).values()
    assert archived["RecordState"] == "ARCHIVED"
    assert third == [archived], "the archived finding the pass sent"


def test_cli_chat_prints_exactly_what_the_chat_topic_receives(account, proxy, guard_env):
    chat_topic, chat_queue = topic_with_queue(account, CHAT_TOPIC, CHAT_QUEUE)
    seeded = seed(account, mixed_drift())
    proxy.set(MIXED_FAULTS)
    result = cli(["audit", "--format", "chat", "--publish", "--chat-topic-arn", chat_topic], guard_env)
    assert result.returncode == 1, result.stderr
    printed = json.loads(result.stdout)
    received = chat_notes(account, chat_queue)
    by_id = lambda notes: sorted(notes, key=lambda n: n["id"])  # noqa: E731
    assert by_id(printed) == by_id(received)
    alerts = {p["fingerprint"]: p for p in pages(account, seeded)}
    assert len(alerts) == len(received) == len(MIXED_RULES)
    for note in received:
        check_chat(note, alerts[note["metadata"]["threadId"]])


def test_cli_sarif_holds_the_catalogue_and_each_finding_with_its_fix(account, proxy, guard_env, catalogue):
    seed(account, mixed_drift())
    proxy.set(MIXED_FAULTS)
    with_findings = cli(["audit", "--format", "sarif"], guard_env)
    assert with_findings.returncode == 1, with_findings.stderr
    report = cli(["audit", "--format", "json"], guard_env)
    doc = json.loads(with_findings.stdout)
    check_sarif(doc, catalogue, json.loads(report.stdout))
    assert sorted(r["ruleId"] for r in doc["runs"][0]["results"]) == MIXED_RULES


@pytest.mark.parametrize("fmt", ["asff", "chat", "sarif"])
def test_outputs_of_a_healthy_account_are_empty_and_exit_0(account, guard_env, catalogue, fmt):
    seed(account, spec_for("healthy"))
    result = cli(["audit", "--format", fmt], guard_env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    if fmt == "sarif":
        check_sarif(doc, catalogue, {"findings": []})
    else:
        assert doc == []


def test_pass_formats_are_refused_where_there_is_no_pass(guard_env):
    result = cli(["rules", "--format", "sarif"], guard_env)
    assert result.returncode == 2 and "--format" in result.stderr, result.stderr


# --- snapshots: audit --save-snapshot, then evaluate offline ---------------------------------------------------------

FORMATS = ["table", "json", "text", "asff", "chat", "sarif"]


UNREACHABLE = {"*": {"mode": "reset"}}  # the proxy resets every connection (and still logs it)


@pytest.fixture()
def offline(tmp_path, proxy):
    """An environment with no usable AWS: bogus credentials, and every endpoint at the proxy, which the test sets
    to UNREACHABLE just before it runs `evaluate` (its call log then shows that nothing was even tried)."""
    yield {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "bogus", "AWS_SECRET_ACCESS_KEY": "bogus", "AWS_ENDPOINT_URL": proxy.url,
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    proxy.set({})


def finding_keys(report):
    return sorted((f["fingerprint"], f["rule"], f["severity"], f["resource_arn"], f["instance_arn"] or "",
                   f["summary"], f["remediation"]) for f in report["findings"])


@pytest.mark.parametrize("name", ["key-disabled", "healthy"])
def test_a_saved_snapshot_evaluates_offline_to_the_same_verdict(account, proxy, guard_env, tmp_path, name, offline):
    seed(account, spec_for(name))
    snapshot = tmp_path / "snapshot.json"
    secret = "sentinel-secret-do-not-save"
    audited = cli(["audit", "--format", "json", "--save-snapshot", str(snapshot)],
                  {**guard_env, "AWS_SECRET_ACCESS_KEY": secret})
    assert audited.returncode == (1 if name != "healthy" else 0), audited.stderr
    saved = json.loads(snapshot.read_text())
    assert saved["schema"] == "connect-slr-guard/snapshot/v1"
    assert {"scope", "trigger", "observed_at", "snapshot"} <= set(saved)
    assert secret not in snapshot.read_text() and "testing" not in snapshot.read_text(), "no credentials"

    proxy.set(UNREACHABLE)  # (also clears the audit's calls from the log)
    results = {fmt: cli(["evaluate", str(snapshot), "--format", fmt], offline) for fmt in FORMATS}
    assert proxy.calls == [], f"evaluate called AWS: {proxy.calls}"
    for fmt, result in results.items():
        assert result.returncode == audited.returncode, (fmt, result.returncode, result.stderr)
        if fmt in ("json", "asff", "chat", "sarif"):
            json.loads(result.stdout)
    original, evaluated = json.loads(audited.stdout), json.loads(results["json"].stdout)
    assert finding_keys(evaluated) == finding_keys(original)
    assert evaluated == original, "same snapshot, same time: the same report"
    fingerprints = {f["fingerprint"] for f in original["findings"]}
    asff, chat = json.loads(results["asff"].stdout), json.loads(results["chat"].stdout)
    sarif_results = json.loads(results["sarif"].stdout)["runs"][0]["results"]
    assert {f["ProductFields"]["connect-slr-guard/Fingerprint"] for f in asff} == fingerprints
    assert {n["metadata"]["threadId"] for n in chat} == fingerprints
    assert {fp for r in sarif_results for fp in r["partialFingerprints"].values()} == fingerprints


@pytest.mark.parametrize("content, says", [
    ("{not json", "snapshot.json"),
    ('{"schema": "connect-slr-guard/alert/v1", "scope": "Everything"}', "snapshot.json"),
    (None, "snapshot.json"),  # no such file
])
def test_evaluate_refuses_what_is_not_a_snapshot_with_exit_2(tmp_path, proxy, offline, content, says):
    proxy.set(UNREACHABLE)
    path = tmp_path / "snapshot.json"
    if content is not None:
        path.write_text(content)
    result = cli(["evaluate", str(path), "--format", "json"], offline)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert says in result.stderr and result.stdout == "", result.stderr


def test_evaluate_refuses_another_snapshot_schema(account, guard_env, tmp_path):
    seed(account, spec_for("key-disabled"))
    snapshot = tmp_path / "snapshot.json"
    assert cli(["audit", "--save-snapshot", str(snapshot)], guard_env).returncode == 1
    saved = json.loads(snapshot.read_text())
    saved["schema"] = "connect-slr-guard/snapshot/v2"
    snapshot.write_text(json.dumps(saved))
    result = cli(["evaluate", str(snapshot)], {"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "snapshot/v1" in result.stderr, result.stderr


# --- failures: an output that cannot be reached never stops the page ------------------------------------------------

def test_security_hub_down_still_pages_and_fails_the_invocation(account, proxy, ledger_env, start_lambda, catalogue):
    seeded = seed(account, spec_for("key-disabled"))
    fn, _ = start_lambda("hub-down", **ledger_env, SECURITY_HUB="on")
    proxy.set({"securityhub": {"mode": "reset"}})
    ok, body = fn.invoke(sweep_event())
    assert not ok, "a finding lost on the way to Security Hub fails the invocation, for the retry"
    assert body["errorType"] == "SecurityHubImportFailed", body
    assert "1 of 1 findings" in body["errorMessage"], body
    assert [p["rule"] for p in pages(account, seeded)] == ["KMS_KEY_UNUSABLE"], "on-call was paged all the same"
    assert hub_findings(account) == {}

    proxy.set({})
    body = invoke_ok(fn, sweep_event())  # Lambda's retry
    assert body["alerts_published"] == 0 and pages(account, seeded) == [], "the retry does not page twice"
    [finding] = hub_findings(account).values()
    assert check_asff(finding, catalogue) and finding["RecordState"] == "ACTIVE"


def test_a_resolution_lost_on_the_way_to_security_hub_is_archived_by_the_retry(account, proxy, ledger_env,
                                                                                  start_lambda):
    seeded = seed(account, spec_for("key-disabled"))
    fn, _ = start_lambda("hub-down-resolve", **ledger_env, SECURITY_HUB="on")
    invoke_ok(fn, sweep_event())
    [opened] = hub_findings(account).values()
    enable_key(account, seeded.domain_key)
    proxy.set({"securityhub": {"mode": "reset"}})
    ok, body = fn.invoke(sweep_event())
    assert not ok and body["errorType"] == "SecurityHubImportFailed", body
    proxy.set({})
    invoke_ok(fn, sweep_event())  # Lambda's retry of the same event
    [finding] = hub_findings(account).values()
    assert (finding["RecordState"], finding["Compliance"]["Status"]) == ("ARCHIVED", "PASSED"), \
        "a fixed drift must not stay ACTIVE in Security Hub because one import failed"


def test_chat_topic_down_still_pages_and_fails_the_invocation(account, start_lambda):
    seeded = seed(account, spec_for("key-disabled"))
    missing_topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:no-such-chat-topic"
    fn, _ = start_lambda("chat-down", CHAT_TOPIC_ARN=missing_topic)
    ok, body = fn.invoke(sweep_event())
    assert not ok and body["errorType"] == "ChatDeliveryFailed", body
    assert "no-such-chat-topic" in body["errorMessage"], body
    assert [p["rule"] for p in pages(account, seeded)] == ["KMS_KEY_UNUSABLE"], "on-call was paged all the same"


def test_a_check_incomplete_instance_is_named_in_security_hub(account, proxy, guard_env, catalogue):
    """CHECK_INCOMPLETE neither passed nor failed: NOT_AVAILABLE, on the instance that could not be read."""
    seed(account, spec_for("access-denied-one-instance"))
    proxy.set(MIXED_FAULTS)
    result = cli(["audit", "--publish", "--security-hub", "on", "--format", "json"], guard_env)
    assert result.returncode == 1, result.stderr
    [finding] = hub_findings(account).values()
    check_asff(finding, catalogue)
    assert (finding["GeneratorId"], finding["Compliance"]["Status"]) == ("CHECK_INCOMPLETE", "NOT_AVAILABLE")
    assert finding["Resources"][0]["Id"] == instance_arn(OTHER_INSTANCE_ID)
