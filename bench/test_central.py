"""Central mode end to end (issue 15): one guard watches many accounts and
Regions. The real Lambda binary over the Runtime API; moto's STS assumes the
member role in each account (its credentials act there, in moto's IAM and
KMS); the Connect/Customer Profiles double answers each account and Region
with its own state, the account being the caller's (from the request's
access key, as moto resolves it). The test plays Lambda's SQS event source
for the FIFO work queue: it receives, hands each message to the function
with its attributes (MessageGroupId included), deletes it once the function
succeeded, and goes on until the queue is empty, keeping a log of every
message and the group it went through."""

import ast
import json
import math
import re
import time
import urllib.error
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from urllib.parse import parse_qs

import boto3
import pytest

from benchmark import CONNECT_BURST, bucket_overruns
from conftest import OUT, binary, sample_event
from local_aws import ACCOUNT, REGION
from runtime_api import FifoEventSource, LambdaFunction
from scenarios import MANAGED_POLICY, MEMBER_ROLE_NAME, ROLE_NAME, member_role_arn, seed_place, subscribe_queue
from test_e2e import drain

OTHER_REGION = "eu-west-1"
REGIONS = (REGION, OTHER_REGION)
OWN_GROUP = f"{ACCOUNT}:{REGION}"  # the template's rules put every event in the central account's group
# ListInstanceStorageConfigs calls per instance: one per storage resource type (src/inventory).
STORAGE_CALLS_PER_INSTANCE = 13


def members(n, first=444400000000):
    return [str(first + 1111 * k) for k in range(1, n + 1)]


# --------------------------------------------------------------------------
# The work queue and Lambda's SQS event source, played by the test
# --------------------------------------------------------------------------

@dataclass
class Delivery:
    message_id: str
    group: str
    body: dict


class WorkQueue:
    """The FIFO work queue, and Lambda's event source that feeds the function from it (bench/runtime_api.py)."""

    def __init__(self, sqs, name="guard-work.fifo"):
        self.sqs = sqs
        self.url = sqs.create_queue(QueueName=name, Attributes={
            "FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "900"})["QueueUrl"]
        self.source = FifoEventSource(sqs, self.url, REGION)

    def put_event(self, event, group=OWN_GROUP):
        """What an EventBridge rule targeting the queue sends: the event as the body, in the rule's group."""
        self.sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(event), MessageGroupId=group,
                              MessageDeduplicationId=event["id"])

    def drain(self, fn, timeout_s=60.0):
        """Every message through the function, one at a time, until the queue is empty: the deliveries made."""
        return [Delivery(d["message_id"], d["group"], d["body"]) for d in self.source.drain(fn, timeout_s=timeout_s)]

    def receive(self):
        """What a poller would get now (the test then plays the event source by hand)."""
        return self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                        AttributeNames=["All"]).get("Messages", [])


class Org:
    """The emulated organisation: the bench (LocalAws) with the central account's on-call queue, subscribed to
    the alert topic, and the FIFO work queue."""

    def __init__(self, aws):
        self.aws = aws
        self.oncall = subscribe_queue(aws)
        self.work = WorkQueue(aws.client("sqs"))

    def __getattr__(self, name):  # client, put_state, double_calls, ...: the bench's
        return getattr(self.aws, name)


def sweep_parts(deliveries):
    return [d for d in deliveries if d.body.get("schema") == "connect-slr-guard/sweep/v1"]


def scheduled_sweep():
    event = json.loads(sample_event("scheduled-sweep.json"))
    event["id"] = str(uuid.uuid4())
    return event


def alerts(account):
    """Every alert document SNS delivered to on-call since the last call."""
    return [json.loads(m["Message"]) for m in drain(account.client("sqs"), account.oncall)]


def rows(docs):
    return sorted((d["account"], d["region"], d["rule"], d["instance_arn"] or "", d["resource_arn"]) for d in docs)


def passes(log_path):
    """The "pass evaluated" log lines of the function, in order."""
    out = []
    for line in log_path.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        fields = doc.get("fields", doc)
        if fields.get("message") == "pass evaluated":
            out.append(fields)
    return out


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

@pytest.fixture()
def org(account):
    return Org(account)


@pytest.fixture()
def central(org, guard_env, request):
    """Starts the function in central mode: central(accounts, **env) -> LambdaFunction."""
    started = []

    def start(accounts, **env):
        log = OUT / f"lambda-central-{request.node.name[:60]}.log"
        fn = LambdaFunction(binary("connect-slr-guard-lambda"), {
            **guard_env, "MEMBER_ROLE_NAME": MEMBER_ROLE_NAME, "MEMBER_ACCOUNTS": ",".join(accounts),
            "SWEEP_REGIONS": ",".join(REGIONS), "WORK_QUEUE_URL": org.work.url, **env}, log_path=log)
        fn.log_path = log
        started.append(fn)
        fn.wait_ready()
        return fn

    yield start
    for fn in started:
        fn.close()


# --------------------------------------------------------------------------
# 1. The emulator: multi-account STS, and the double per account
# --------------------------------------------------------------------------

def test_fact_assumed_role_credentials_act_in_the_roles_account(account):
    member = "444455556666"
    account.client("iam").create_role(RoleName="central-only", AssumeRolePolicyDocument="{}")
    iam = account.client("iam", member)
    assert account.client("sts", member).get_caller_identity()["Account"] == member
    iam.create_role(RoleName="member-only", AssumeRolePolicyDocument="{}")
    iam.attach_role_policy(RoleName="member-only", PolicyArn=MANAGED_POLICY)  # AWS managed policies in every account
    assert [r["Arn"] for r in iam.list_roles()["Roles"]] == [f"arn:aws:iam::{member}:role/member-only"]
    assert [r["RoleName"] for r in account.client("iam").list_roles()["Roles"]] == ["central-only"]
    key = account.client("kms", member, OTHER_REGION).create_key()["KeyMetadata"]["Arn"]
    assert key.startswith(f"arn:aws:kms:{OTHER_REGION}:{member}:key/")
    assert account.client("kms", region=OTHER_REGION).list_keys()["Keys"] == [], "a member's key is not the central's"


def test_gap_moto_assumes_a_role_that_does_not_exist(account):
    """Why the bench refuses a member role at the fault proxy (test_a_member_whose_role_cannot_be_assumed...):
    moto's AssumeRole checks neither that the role exists nor its trust policy."""
    sts = account.client("sts")
    made_up = sts.assume_role(RoleArn=member_role_arn("999988887777", "no-such-role"), RoleSessionName="probe",
                              ExternalId="wrong")
    assert made_up["AssumedRoleUser"]["Arn"].startswith("arn:aws:sts::999988887777:assumed-role/no-such-role/"), \
        "fixed: moto now refuses a role that does not exist; refuse it in moto rather than at the proxy"


def test_the_double_answers_each_account_and_region_with_its_own_state(account):
    a, b = members(2)
    places = {(a, REGION): seed_place(account, a, REGION, instances=2),
              (b, OTHER_REGION): seed_place(account, b, OTHER_REGION)}
    account.double_calls(clear=True)
    seen = {}
    for acct in (ACCOUNT, a, b):
        for region in REGIONS:
            creds = (account.credentials_in(acct) if acct != ACCOUNT
                     else {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
            connect = boto3.client("connect", region_name=region, endpoint_url=account.double_url, **creds)
            seen[(acct, region)] = sorted(i["Arn"] for i in connect.list_instances()["InstanceSummaryList"])
    assert seen == {(ACCOUNT, REGION): [], (ACCOUNT, OTHER_REGION): [],
                    (a, REGION): sorted(places[(a, REGION)].instance_arns), (a, OTHER_REGION): [],
                    (b, REGION): [], (b, OTHER_REGION): places[(b, OTHER_REGION)].instance_arns}
    assert {(c["account"], c["region"]) for c in account.double_calls()} == set(seen)
    # A state put for an account must name it in its instances' ARNs.
    with pytest.raises(urllib.error.HTTPError):
        account.put_state({"instances": [{"Id": "x", "Arn": f"arn:aws:connect:{REGION}:{ACCOUNT}:instance/x"}]},
                          account=a, region=REGION)


# --------------------------------------------------------------------------
# 2. The fan-out sweep: 20 accounts x 2 Regions
# --------------------------------------------------------------------------

FAN_OUT_RPS = 40


def assume_role_requests(proxy):
    """The parameters of each AssumeRole call the guard made through the proxy, in order."""
    out = []
    for service, operation, request in proxy.calls:
        if operation == "AssumeRole":
            body = request.split(" ", 2)[2]
            out.append({k: v[0] for k, v in parse_qs(ast.literal_eval(body).decode()).items()})  # repr of bytes
    return out


def assumed_roles(proxy):
    """The role ARNs of the AssumeRole calls the guard made through the proxy, in order."""
    return [r["RoleArn"] for r in assume_role_requests(proxy)]


def test_a_scheduled_sweep_fans_out_to_every_account_and_region_once(org, central, ledger_table, proxy):
    accounts = members(20)
    no_slr = {accounts[3], accounts[11]}  # both Regions of these accounts
    no_grant = {(accounts[0], REGION), (accounts[7], OTHER_REGION), (accounts[19], OTHER_REGION)}
    seeded = {}
    for acct in accounts:
        for region in REGIONS:
            seeded[(acct, region)] = seed_place(org, acct, region, role=acct not in no_slr,
                                                grant=(acct, region) not in no_grant)
    fn = central(accounts, CONNECT_API_RPS=str(FAN_OUT_RPS), LEDGER_TABLE=ledger_table)
    org.double_calls(clear=True)
    org.work.put_event(scheduled_sweep())
    started = time.monotonic()
    deliveries = org.work.drain(fn)
    drained_s = time.monotonic() - started

    # The schedule fanned out, one part per place, each in its place's group; no continuation.
    assert deliveries[0].group == OWN_GROUP and deliveries[0].body["detail-type"] == "Scheduled Event"
    parts = sweep_parts(deliveries)
    assert len(deliveries) == 1 + len(parts)
    assert len(parts) == 40
    assert sorted((p.body["account"], p.body["region"]) for p in parts) == sorted(seeded)
    assert all(p.group == f"{p.body['account']}:{p.body['region']}" for p in parts)
    assert all((p.body["after"], p.body["part"]) == (None, 0) for p in parts)

    # Each place read once, with its account's credentials: one ListInstances and 13 storage reads per place.
    calls = org.double_calls()
    keys = {acct: {c["access_key"] for c in calls if c["account"] == acct} for acct in accounts}
    assert all(len(k) == 1 and "testing" not in k for k in keys.values()), keys
    assert len(set.union(*keys.values())) == 20, "one set of credentials per account, shared by its Regions"
    per_place = Counter((c["account"], c["region"], c["operation"]) for c in calls)
    for (acct, region), place in seeded.items():
        assert per_place[(acct, region, "ListInstances")] == 1, (acct, region)
        assert per_place[(acct, region, "ListInstanceStorageConfigs")] == STORAGE_CALLS_PER_INSTANCE, (acct, region)
    assert {(c["account"], c["region"]) for c in calls} == set(seeded), "a call outside the swept places"
    assert not [c for c in calls if c["operation"] == "DescribeInstance"], "a sweep lists; it describes nothing"
    targets = Counter((c["operation"], c["target"]) for c in calls if c["operation"] == "ListAccountIntegrations")
    assert all(n == 1 for n in targets.values()) and len(targets) == 40, targets

    # Each place's Connect calls kept to its own bucket (CONNECT_API_RPS per API, burst 5).
    stamps = defaultdict(list)
    for c in calls:
        if c["operation"] in ("ListInstances", "ListInstanceStorageConfigs", "DescribeInstance"):
            stamps[(c["account"], c["region"], c["operation"])].append(c["time"])
    overruns = {k: bucket_overruns(sorted(v), FAN_OUT_RPS, CONNECT_BURST) for k, v in stamps.items()}
    assert not {k: n for k, n in overruns.items() if n}, "a place's Connect calls outran its quota"
    storage = [sorted(v) for (_, _, op), v in stamps.items() if op == "ListInstanceStorageConfigs"]
    assert all(s[-1] - s[0] >= (STORAGE_CALLS_PER_INSTANCE - CONNECT_BURST) / FAN_OUT_RPS * 0.9 for s in storage)

    # One role assumed per account, its credentials shared by the account's Regions.
    assert sorted(assumed_roles(proxy)) == sorted(member_role_arn(a) for a in accounts)

    # Exactly the drifted places page, each naming its account and Region.
    expected = []
    for (acct, region), place in seeded.items():
        [instance_arn] = place.instance_arns
        assert f":{region}:{acct}:instance/" in instance_arn
        if acct in no_slr:
            expected.append((acct, region, "CONNECT_SLR_MISSING", instance_arn, place.role_arn))
        elif (acct, region) in no_grant:
            expected.append((acct, region, "STORAGE_KMS_GRANT_MISSING", instance_arn, place.key_arn))
    docs = alerts(org)
    assert rows(docs) == sorted(expected)
    assert all(d["status"] == "OPEN" for d in docs)
    # The SLR is one role per account: the same drift in two Regions is two alerts, told apart by the fingerprint.
    slr = [d for d in docs if d["rule"] == "CONNECT_SLR_MISSING"]
    assert len({d["fingerprint"] for d in slr}) == len(slr) == 4

    # Under the ledger, no place's sweep resolved another's drifts: a second sweep pages nothing.
    org.work.put_event(scheduled_sweep())
    assert len(sweep_parts(org.work.drain(fn))) == 40
    assert alerts(org) == [], "a sweep of one place resolved or re-opened another place's drift"
    assert len(assumed_roles(proxy)) == 20, "credentials are kept until shortly before they expire (moto's: 1 h)"
    print(f"\nfan-out: 40 places drained in {drained_s:.1f} s")


@pytest.fixture()
def ledger_table(org):
    table = "connect-slr-guard-ledger"
    org.client("dynamodb").create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    return table


def test_member_accounts_organization_sweeps_the_active_accounts_and_the_central_one(org, central, proxy):
    """The central account reads its own Region with the function's role and its other Regions through its own
    audit role (README, "Limits to know"), like any member."""
    organizations = org.client("organizations")
    organizations.create_organization(FeatureSet="ALL")
    active = []
    for n in range(3):
        created = organizations.create_account(AccountName=f"member-{n}", Email=f"member-{n}@example.com")
        active.append(created["CreateAccountStatus"]["AccountId"])
    closed = active.pop()
    organizations.close_account(AccountId=closed)  # SUSPENDED: not swept
    seeded = {(acct, region): seed_place(org, acct, region, grant=(acct, region) != (ACCOUNT, OTHER_REGION))
              for acct in [ACCOUNT, *active, closed] for region in REGIONS}
    fn = central(["organization"])
    org.double_calls(clear=True)
    org.work.put_event(scheduled_sweep())
    parts = sweep_parts(org.work.drain(fn))
    swept = {(p.body["account"], p.body["region"]) for p in parts}
    assert len(parts) == 6 and swept == {(a, r) for a in [ACCOUNT, *active] for r in REGIONS}
    calls = org.double_calls()
    assert {(c["account"], c["region"]) for c in calls} == swept
    assert sorted(assumed_roles(proxy)) == sorted(member_role_arn(a) for a in [ACCOUNT, *active])
    keys = {region: {c["access_key"] for c in calls if c["account"] == ACCOUNT and c["region"] == region}
            for region in REGIONS}
    assert keys[REGION] == {"testing"}, "the central Region is read with the function's own credentials"
    assert len(keys[OTHER_REGION]) == 1 and "testing" not in keys[OTHER_REGION], "the others with its audit role's"
    drifted = seeded[(ACCOUNT, OTHER_REGION)]
    assert rows(alerts(org)) == [(ACCOUNT, OTHER_REGION, "STORAGE_KMS_GRANT_MISSING", drifted.instance_arns[0],
                                  drifted.key_arn)]


def test_a_redelivered_schedule_or_part_queues_nothing_twice(org, central):
    """SQS delivers at least once: the fan-out's and the continuation's deduplication ids make a redelivered
    message's sends no-ops (FIFO deduplication, 5 minutes)."""
    a, b = members(2)
    for acct in (a, b):
        seed_place(org, acct, REGION, instances=12 if acct == a else 1)
    fn = central([a, b], SWEEP_REGIONS=REGION, CONNECT_API_RPS="20")  # a part of 1 s reads 1 instance
    org.work.put_event(scheduled_sweep())
    [schedule] = org.work.receive()
    for _ in range(2):  # delivered, then delivered again (say, after a timeout)
        assert fn.invoke({"Records": [org.work.source.record(schedule)]}) == (True, {"batchItemFailures": []})
    org.work.sqs.delete_message(QueueUrl=org.work.url, ReceiptHandle=schedule["ReceiptHandle"])
    first_parts = org.work.receive()
    assert sorted(json.loads(m["Body"])["account"] for m in first_parts) == [a, b]
    # A's 12 instances in parts of 1 (a deadline of 1 s): its first part, delivered twice, queues one next part.
    [part_a] = [m for m in first_parts if json.loads(m["Body"])["account"] == a]
    for _ in range(2):
        ok, body = fn.invoke({"Records": [org.work.source.record(part_a)]}, timeout_s=1.0)
        assert ok and body == {"batchItemFailures": []}, body
    for m in first_parts:
        org.work.sqs.delete_message(QueueUrl=org.work.url, ReceiptHandle=m["ReceiptHandle"])
    [next_part] = org.work.receive()
    assert (json.loads(next_part["Body"])["account"], json.loads(next_part["Body"])["part"]) == (a, 1)


# --------------------------------------------------------------------------
# 3. Events from member accounts
# --------------------------------------------------------------------------

def member_event(name, account, region, **replace):
    text = sample_event(name).replace(ACCOUNT, account)
    for old, new in replace.items():
        text = text.replace(old, new)
    event = json.loads(text)
    event["region"] = region if event["source"] != "aws.iam" else "us-east-1"
    event["id"] = str(uuid.uuid4())
    return event


def test_events_from_two_member_accounts_are_checked_in_their_account_and_region(org, central, proxy):
    a, b = members(2)
    place_a = seed_place(org, a, OTHER_REGION)
    seed_place(org, a, REGION)
    places_b = {region: seed_place(org, b, region) for region in REGIONS}
    # A: the recordings key of eu-west-1 disabled. B: the SLR's managed policy detached (IAM: every Region).
    key_id = place_a.key_arn.rsplit("/", 1)[1]
    org.client("kms", a, OTHER_REGION).disable_key(KeyId=key_id)
    org.client("iam", b).detach_role_policy(RoleName=ROLE_NAME, PolicyArn=MANAGED_POLICY)
    fn = central([a, b], MEMBER_EXTERNAL_ID="bench-external-id")
    org.double_calls(clear=True)
    kms_event = member_event("kms-disable-key.json", a, OTHER_REGION,
                             **{"1234abcd-12ab-34cd-56ef-1234567890ab": key_id, "eu-west-2": OTHER_REGION})
    iam_event = member_event("iam-detach-role-policy.json", b, "us-east-1")
    org.work.put_event(kms_event)
    org.work.put_event(iam_event)
    deliveries = org.work.drain(fn)

    # The KMS event moved from the central group to its place's group and ran there; the IAM event (global) ran
    # where it landed, once per swept Region of its account.
    route = [(d.group, d.body.get("id")) for d in deliveries]
    assert route == [(OWN_GROUP, kms_event["id"]), (OWN_GROUP, iam_event["id"]),
                     (f"{a}:{OTHER_REGION}", kms_event["id"])]
    docs = alerts(org)
    assert rows(docs) == sorted([
        (a, OTHER_REGION, "KMS_KEY_UNUSABLE", place_a.instance_arns[0], place_a.key_arn),
        *[(b, region, "CONNECT_SLR_POLICY_DETACHED", places_b[region].instance_arns[0], places_b[region].role_arn)
          for region in REGIONS]])
    assert {d["trigger"]["event_id"] for d in docs} == {kms_event["detail"]["eventID"], iam_event["detail"]["eventID"]}
    # Each pass read its own account's Connect only, through the account's audit role, assumed once per account
    # with the external id.
    calls = org.double_calls()
    assert {(c["account"], c["region"]) for c in calls} == {(a, OTHER_REGION), (b, REGION), (b, OTHER_REGION)}
    assert sorted((r["RoleArn"], r["RoleSessionName"], r.get("ExternalId")) for r in assume_role_requests(proxy)) == [
        (member_role_arn(account), "connect-slr-guard", "bench-external-id") for account in (a, b)]


# --------------------------------------------------------------------------
# 4. A member whose role cannot be assumed
# --------------------------------------------------------------------------

def test_a_member_whose_role_cannot_be_assumed_is_check_incomplete_and_the_others_go_on(org, central, proxy):
    a, b, refused = members(3)
    drifted = seed_place(org, a, REGION, grant=False)
    seed_place(org, a, OTHER_REGION)
    for region in REGIONS:
        seed_place(org, b, region)
        seed_place(org, refused, region, audit_role=False)
    # moto would assume it anyway (test_gap_moto_assumes_a_role_that_does_not_exist): STS refuses at the proxy,
    # as AWS does for a role that is missing or whose trust does not admit the guard.
    proxy.set({"sts": {"mode": "deny", "match": refused}})
    fn = central([a, b, refused])
    org.double_calls(clear=True)
    org.work.put_event(scheduled_sweep())
    parts = sweep_parts(org.work.drain(fn))
    assert len(parts) == 6
    role = member_role_arn(refused)
    assert rows(alerts(org)) == sorted([
        (a, REGION, "STORAGE_KMS_GRANT_MISSING", drifted.instance_arns[0], drifted.key_arn),
        *[(refused, region, "CHECK_INCOMPLETE", "", role) for region in REGIONS]])
    assert proxy.counts_of("sts")["faulted"] >= 1
    calls = org.double_calls()
    assert {(c["account"], c["region"]) for c in calls} == {(a, REGION), (a, OTHER_REGION), (b, REGION),
                                                             (b, OTHER_REGION)}, "the others went on; none as refused"


def test_a_refused_role_says_why_and_its_account_is_read_once_the_role_is_there(org, central, proxy):
    [refused] = members(1)
    place = seed_place(org, refused, REGION, grant=False)
    proxy.set({"sts": {"mode": "deny", "match": refused}})
    fn = central([refused], SWEEP_REGIONS=REGION)
    org.work.put_event(scheduled_sweep())
    org.work.drain(fn)
    [doc] = alerts(org)
    assert (doc["account"], doc["region"], doc["rule"], doc["resource_arn"]) == (
        refused, REGION, "CHECK_INCOMPLETE", member_role_arn(refused))
    text = json.dumps(doc)
    assert "role" in text and re.search(r"AccessDenied|not authorized", text), doc
    # The role deployed (say, by the StackSet), the same function process reads the account at the next sweep.
    proxy.set({})
    org.double_calls(clear=True)
    org.work.put_event(scheduled_sweep())
    org.work.drain(fn)
    assert rows(alerts(org)) == [(refused, REGION, "STORAGE_KMS_GRANT_MISSING", place.instance_arns[0], place.key_arn)]
    assert {(c["account"], c["region"]) for c in org.double_calls()} == {(refused, REGION)}


def test_member_findings_are_paged_but_not_imported_into_security_hub(org, central, proxy):
    """Security Hub's default product imports its own account's findings only (README): a member's drift is
    paged, the central account's is imported too."""
    [member] = members(1)
    own = seed_place(org, ACCOUNT, REGION, grant=False)
    theirs = seed_place(org, member, REGION, grant=False)
    org.client("securityhub").enable_security_hub()
    fn = central([ACCOUNT, member], SWEEP_REGIONS=REGION, SECURITY_HUB="on")
    org.work.put_event(scheduled_sweep())
    org.work.drain(fn)
    docs = alerts(org)
    assert rows(docs) == sorted((p.account, REGION, "STORAGE_KMS_GRANT_MISSING", p.instance_arns[0], p.key_arn)
                                for p in (own, theirs))
    imported = [f for page in org.client("securityhub").get_paginator("get_findings").paginate()
                for f in page["Findings"]]
    assert [(f["AwsAccountId"], f["Resources"][0]["Id"]) for f in imported] == [(ACCOUNT, own.key_arn)]
    fingerprint = {d["account"]: d["fingerprint"] for d in docs}[ACCOUNT]
    assert imported[0]["Id"] == f"connect-slr-guard/{fingerprint}"
    assert member not in json.dumps([c for c in proxy.calls if c[0] == "securityhub"])


# --------------------------------------------------------------------------
# 5. Continuation: 300 instances in one account and Region
# --------------------------------------------------------------------------

# The default quota (2/s) and Lambda's 15-minute limit, 100x faster: 200/s and 9 s. A part reads
# floor(remaining / 2 * rate / 13) instances: 69 at either scale (69.2 at 900 s). The deadline is 9.09 s
# (69.9): the function may take up to 120 ms to get the event and size its part and still read 69.
SCALE = 100
CONTINUATION_RPS = 2 * SCALE
DEADLINE_S = 909 / SCALE


def test_a_large_place_completes_through_continuations_in_its_group(org, central):
    [acct] = members(1)
    place = seed_place(org, acct, REGION, instances=300)
    fn = central([acct], SWEEP_REGIONS=REGION, CONNECT_API_RPS=str(CONTINUATION_RPS))
    org.double_calls(clear=True)
    org.work.put_event(scheduled_sweep())
    started = time.monotonic()
    deliveries = org.work.drain(fn, timeout_s=DEADLINE_S)
    drained_s = time.monotonic() - started

    per_part = math.floor(DEADLINE_S / 2 * CONTINUATION_RPS / STORAGE_CALLS_PER_INSTANCE)
    assert per_part == 69
    parts = sweep_parts(deliveries)
    assert len(parts) == math.ceil(300 / per_part) == 5
    assert [p.body["part"] for p in parts] == list(range(5))
    assert {p.group for p in parts} == {f"{acct}:{REGION}"}
    ids = sorted(place.instance_ids)
    assert [p.body["after"] for p in parts] == [None] + [ids[per_part * k - 1] for k in range(1, 5)]

    # Every instance read exactly once over the parts (13 storage reads each), in its part.
    calls = org.double_calls()
    storage = Counter(c["target"] for c in calls if c["operation"] == "ListInstanceStorageConfigs")
    assert storage == {i: STORAGE_CALLS_PER_INSTANCE for i in ids}
    checked = [p["instances_checked"] for p in passes(fn.log_path)]
    assert checked == [per_part] * 4 + [300 - 4 * per_part]
    assert all(p["checks_incomplete"] == 0 for p in passes(fn.log_path))
    assert alerts(org) == [], "no CHECK_INCOMPLETE from the deadline, nor anything else"
    print(f"\ncontinuation: 300 instances in {len(parts)} parts, drained in {drained_s:.1f} s")
