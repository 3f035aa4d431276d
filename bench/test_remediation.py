"""Opt-in remediation (issue 16) end to end: the real Lambda (REMEDIATION=off|dry-run|apply over the Runtime API)
and the real CLI (`remediate [--apply]`) against moto and the Connect/Customer Profiles double. Every test judges
the emulator's state (KMS grants, IAM roles and policies, the ledger table) and the calls the fault proxy saw, not
only what the guard says it did.

moto does not enforce key policies or key state on CreateGrant: a grant the guard should not have made would be
made, and would show here."""

import json
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import OUT, binary, sample_event
from fault_proxy import FaultProxy, error_response
from local_aws import ACCOUNT, REGION, http_json
from runtime_api import LambdaFunction
from scenarios import (I1, I2, INSTANCE_ID, OTHER_INSTANCE_ID, ROLE_ARN, ROLE_NAME, SCENARIOS, SLR_PATH, Spec,
                       connect_state, create_role, event_for, instance_arn, role_arn, seed, spec_for)
from test_e2e import drain
from test_ledger import TABLE, ledger_env  # noqa: F401  (a fixture: a fresh ledger table, LEDGER_TABLE set)

REQUIRED = ["Decrypt", "GenerateDataKey"]  # REQUIRED_GRANT_OPERATIONS' default
GRANT_PREFIX = "connect-slr-guard-"
# The drifts the guard fixes with a grant, one scenario each (the stream key's is a STORAGE_KMS_GRANT_MISSING on a
# third key).
GRANT_SCENARIOS = ["profiles-grant-missing", "profiles-grant-incomplete", "storage-grant-missing",
                   "stream-key-grant-missing"]
READS = ("Get", "List", "Describe")  # what the guard may call on IAM, KMS, Kinesis, Connect and Customer Profiles
WATCHED = {"iam", "kms", "kinesis", "firehose", "connect", "profile"}


# --- the emulator's state, and the calls the guard made ---------------------------------------------------------

def key_id(arn):
    return arn.rsplit("/", 1)[1]


def grants(account, key_arn):
    """The grants moto holds on a key, as (grantee, sorted operations, name, grant id)."""
    kms = account.client("kms")
    found = []
    for page in kms.get_paginator("list_grants").paginate(KeyId=key_id(key_arn)):
        found += [(g["GranteePrincipal"], tuple(sorted(g["Operations"])), g.get("Name", ""), g["GrantId"])
                  for g in page["Grants"]]
    return sorted(found)


def kms_state(account):
    """Every key in the account: its state, its key policy and its grants."""
    kms = account.client("kms")
    state = {}
    for page in kms.get_paginator("list_keys").paginate():
        for key in page["Keys"]:
            kid = key["KeyId"]
            state[kid] = {
                "state": kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"],
                "policy": json.loads(kms.get_key_policy(KeyId=kid, PolicyName="default")["Policy"]),
                "grants": grants(account, key["KeyArn"]),
            }
    return state


def iam_state(account):
    """Every role (path, id, trust, creation, attached and inline policies) and every customer managed policy."""
    iam = account.client("iam")
    roles = {}
    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            name = role["RoleName"]
            roles[role["Arn"]] = {
                "path": role["Path"], "id": role["RoleId"], "created": role["CreateDate"],
                "trust": role["AssumeRolePolicyDocument"],
                "attached": sorted(p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)
                                   ["AttachedPolicies"]),
                "inline": {p: iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
                           for p in iam.list_role_policies(RoleName=name)["PolicyNames"]},
            }
    local = sorted((p["Arn"], p["DefaultVersionId"]) for p in iam.list_policies(Scope="Local")["Policies"])
    return {"roles": roles, "local_policies": local}


def state(account):
    return {"kms": kms_state(account), "iam": iam_state(account)}


def writes(proxy):
    """The calls the guard made, through the proxy, to anything it only reads (everything but SNS, SQS, STS,
    DynamoDB, Security Hub), other than reads."""
    return [(service, op) for service, op, _ in proxy.calls if service in WATCHED and not op.startswith(READS)]


def create_grant_calls(proxy):
    return [request for service, op, request in proxy.calls if (service, op) == ("kms", "CreateGrant")]


def guard_grants(account, key_arn):
    """The grants on a key whose name says the guard made them."""
    return [g for g in grants(account, key_arn) if g[2].startswith(GRANT_PREFIX)]


# --- the real binaries ------------------------------------------------------------------------------------------

@pytest.fixture()
def start(guard_env):
    """start(name, **settings) -> the real Lambda with `settings` over the bench's environment."""
    started = []

    def start_function(name, env=None, **settings):
        fn = LambdaFunction(binary("connect-slr-guard-lambda"), {**(env or guard_env), **settings},
                            log_path=OUT / f"lambda-remediation-{name}.log")
        started.append(fn)
        fn.wait_ready()
        return fn

    yield start_function
    for fn in started:
        fn.close()


def sweep_event():
    return json.loads(sample_event("scheduled-sweep.json"))


def invoke_ok(fn, event=None):
    ok, body = fn.invoke(event or sweep_event())
    assert ok, f"invocation failed: {body}"
    return body


def pages(account, seeded):
    """The alert documents SNS delivered to on-call since the last look, by rule."""
    docs = [json.loads(m["Message"]) for m in drain(account.client("sqs"), seeded.queue_url)]
    return sorted(docs, key=lambda d: (d["rule"], d["resource_arn"]))


def remediate(env, *args):
    """`connect-slr-guard remediate ARGS --format json` -> (exit status, report)."""
    result = subprocess.run([binary("connect-slr-guard"), "remediate", *args, "--format", "json"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1, 2), result.stderr
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"remediate printed no report (exit {result.returncode}): {result.stdout!r} {result.stderr}")
    return result.returncode, report


def expected(name, seeded):
    """The one (rule, instance, key) a grant scenario raises."""
    [row] = SCENARIOS[name].resolve(seeded)
    return row


def check_fix(fix, rule, key_arn, mode_made):
    assert (fix["rule"], fix["key_arn"], fix["instance_arn"]) == (rule, key_arn, I1)
    assert fix["grantee"] == ROLE_ARN
    assert fix["operations"] == REQUIRED
    assert fix["grant_name"] == f"{GRANT_PREFIX}{rule}"
    assert len(fix["fingerprints"]) == 1 and re.fullmatch(r"[0-9a-f]{32}", fix["fingerprints"][0])
    if not mode_made:
        assert (fix["outcome"], fix["verified"]) == (None, None), fix


def check_made(account, before, key_arn, rule, fix=None):
    """Exactly one new grant on `key_arn`, as the fix must make it; nothing else in KMS or IAM changed."""
    after = state(account)
    kid = key_id(key_arn)
    new = sorted(set(after["kms"][kid]["grants"]) - set(before["kms"][kid]["grants"]))
    assert len(new) == 1, f"expected one new grant on {kid}: {new}"
    grantee, operations, name, grant_id = new[0]
    assert (grantee, operations, name) == (ROLE_ARN, tuple(sorted(REQUIRED)), f"{GRANT_PREFIX}{rule}")
    assert set(before["kms"][kid]["grants"]) <= set(after["kms"][kid]["grants"]), "no grant was removed"
    after["kms"][kid]["grants"] = before["kms"][kid]["grants"]
    assert after == before, "the fix changed nothing but the grant"
    if fix is not None:
        assert fix["outcome"] == {"result": "applied", "grant_id": grant_id}, fix
    return grant_id


# --- 1. each grant fix, made and verified -------------------------------------------------------------------------

@pytest.mark.parametrize("name", GRANT_SCENARIOS)
def test_the_lambda_makes_each_grant_fix_and_verifies_it(account, proxy, start, name):
    seeded = seed(account, spec_for(name))
    rule, instance, key_arn = expected(name, seeded)
    before = state(account)
    fn = start(f"apply-{name}", REMEDIATION="apply")
    proxy.set({})
    body = invoke_ok(fn)

    done = body["remediation"]
    assert (done["mode"], done["max_actions"], done["over_cap"], done["refusals"]) == ("apply", 5, False, [])
    [fix] = done["fixes"]
    check_fix(fix, rule, key_arn, mode_made=True)
    assert fix["verified"] is True
    grant_id = check_made(account, before, key_arn, rule, fix)
    assert writes(proxy) == [("kms", "CreateGrant")], "one write: the grant"

    [page] = pages(account, seeded)  # the drift pages all the same, saying what was done about it
    assert (page["rule"], page["instance_arn"], page["resource_arn"]) == (rule, instance, key_arn)
    assert page["fingerprint"] == fix["fingerprints"][0]
    action = page["details"]["remediation_action"]
    assert action["mode"] == "apply"
    assert action["result"].startswith("made and verified"), action
    assert action["outcome"] == {"result": "applied", "grant_id": grant_id}
    assert key_arn in action["action"] and f"{GRANT_PREFIX}{rule}" in action["action"]
    assert body["alerts_published"] == 1

    proxy.set({})
    again = invoke_ok(fn)
    assert again["findings"] == [] and again["remediation"]["fixes"] == [], again
    assert create_grant_calls(proxy) == [], "a fixed drift is not fixed twice"
    assert pages(account, seeded) == []
    assert len(guard_grants(account, key_arn)) == 1


@pytest.mark.parametrize("name", GRANT_SCENARIOS)
def test_cli_remediate_apply_makes_each_grant_fix_and_exits_0(account, proxy, guard_env, name):
    seeded = seed(account, spec_for(name))
    rule, _, key_arn = expected(name, seeded)
    before = state(account)
    status, report = remediate(guard_env, "--apply")
    assert status == 0, report
    [fix] = report["remediation"]["fixes"]
    check_fix(fix, rule, key_arn, mode_made=True)
    assert fix["verified"] is True
    grant_id = check_made(account, before, key_arn, rule, fix)
    [finding] = report["findings"]
    assert finding["details"]["remediation_action"]["outcome"]["grant_id"] == grant_id

    proxy.set({})
    status, report = remediate(guard_env)
    assert status == 0 and report["findings"] == [] and report["remediation"]["fixes"] == [], report
    status, report = remediate(guard_env, "--apply")
    assert status == 0 and report["remediation"]["fixes"] == [], report
    assert create_grant_calls(proxy) == [], "nothing left to plan"
    assert len(guard_grants(account, key_arn)) == 1


def test_cli_remediate_exits_1_when_a_drift_without_a_fix_remains(account, guard_env):
    spec = spec_for("profiles-grant-missing")
    spec.managed_policy = False  # CONNECT_SLR_POLICY_DETACHED: no fix the guard makes
    seeded = seed(account, spec)
    status, report = remediate(guard_env, "--apply")
    assert status == 1, report
    assert sorted(f["rule"] for f in report["findings"]) == ["CONNECT_SLR_POLICY_DETACHED",
                                                             "PROFILES_KMS_GRANT_MISSING"]
    assert [f["verified"] for f in report["remediation"]["fixes"]] == [True]
    assert len(guard_grants(account, seeded.domain_key)) == 1
    assert account.client("iam").list_attached_role_policies(RoleName=ROLE_NAME)["AttachedPolicies"] == [], \
        "the guard writes nothing to IAM"


def test_cli_remediate_filters_by_rule_and_instance(account, proxy, guard_env):
    spec = spec_for("profiles-grant-missing")
    spec.storage_grant = False
    spec.second_instance = True
    seeded = seed(account, spec)
    status, report = remediate(guard_env, "--apply", "--rule", "STORAGE_KMS_GRANT_MISSING")
    assert status == 0, "the domain key's drift is outside the filter"
    assert [f["rule"] for f in report["remediation"]["fixes"]] == ["STORAGE_KMS_GRANT_MISSING"]
    assert len(guard_grants(account, seeded.storage_key)) == 1
    assert guard_grants(account, seeded.domain_key) == [], "a rule the filter leaves out is not fixed"

    proxy.set({})
    status, report = remediate(guard_env, "--apply", "--instance", instance_arn(OTHER_INSTANCE_ID))
    assert status == 0 and report["remediation"]["fixes"] == [], report
    assert guard_grants(account, seeded.domain_key) == [] and create_grant_calls(proxy) == []
    assert INSTANCE_ID not in " ".join(r for s, _, r in proxy.calls if s == "connect"), "only that instance is read"

    status, report = remediate(guard_env, "--instance", I1)
    assert status == 1 and [f["rule"] for f in report["remediation"]["fixes"]] == ["PROFILES_KMS_GRANT_MISSING"]


def test_one_grant_per_key_and_grantee_whatever_the_drifts_it_fixes(account, proxy, start):
    """Two instances share the SLR and the domain (so its key): two drifts, one grant."""
    spec = spec_for("profiles-grant-missing")
    spec.second_instance = True
    seeded = seed(account, spec)
    shared = connect_state(spec, seeded.domain_key, seeded.storage_key)
    shared["integrations"].append({"DomainName": spec.domain, "Uri": I2, "ObjectTypeName": "CTR"})
    http_json("PUT", f"{account.double_url}/_double/state", shared)
    fn = start("shared-key", REMEDIATION="apply")
    proxy.set({})
    body = invoke_ok(fn)
    [fix] = body["remediation"]["fixes"]
    found = pages(account, seeded)
    assert sorted((p["rule"], p["instance_arn"]) for p in found) == [("PROFILES_KMS_GRANT_MISSING", I1),
                                                                     ("PROFILES_KMS_GRANT_MISSING", I2)]
    assert sorted(fix["fingerprints"]) == sorted(p["fingerprint"] for p in found)
    assert fix["verified"] is True and len(create_grant_calls(proxy)) == 1
    [(grantee, _, _, grant_id)] = guard_grants(account, seeded.domain_key)
    assert grantee == ROLE_ARN
    assert all(p["details"]["remediation_action"]["outcome"]["grant_id"] == grant_id for p in found)


@pytest.mark.parametrize("args, says", [
    (["--rule", "NOT_A_RULE"], "not a rule"),
    (["--instance", "arn:aws:iam::111122223333:role/x"], "--instance"),
    (["--max-actions", "many"], "REMEDIATION_MAX_ACTIONS"),
])
def test_cli_remediate_refuses_bad_arguments_with_exit_2(account, proxy, guard_env, args, says):
    seed(account, spec_for("profiles-grant-missing"))
    result = subprocess.run([binary("connect-slr-guard"), "remediate", "--apply", *args], env=guard_env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and says in result.stderr, (result.returncode, result.stderr)
    assert create_grant_calls(proxy) == []


# --- 2. a dry run changes nothing ---------------------------------------------------------------------------------

def three_grant_drifts():
    """Three keys to fix at once: the domain key's grant incomplete, the recordings' and the stream's missing."""
    spec = spec_for("profiles-grant-incomplete")
    spec.storage_grant = False
    spec.stream_key = True
    return spec


def drift_rows(seeded):
    return sorted([("PROFILES_KMS_GRANT_INCOMPLETE", seeded.domain_key),
                   ("STORAGE_KMS_GRANT_MISSING", seeded.storage_key),
                   ("STORAGE_KMS_GRANT_MISSING", seeded.stream_key)])


def test_a_dry_run_changes_nothing_and_prints_the_plan(account, proxy, guard_env, start):
    seeded = seed(account, three_grant_drifts())
    before = state(account)

    table = subprocess.run([binary("connect-slr-guard"), "remediate"], env=guard_env, capture_output=True,
                           text=True, timeout=120)
    assert table.returncode == 1, table.stderr
    assert "mode dry-run" in table.stdout and "fixes 3" in table.stdout
    planned = [line for line in table.stdout.splitlines() if line.rstrip().endswith("planned")]
    assert len(planned) == 3, table.stdout
    for rule, key_arn in drift_rows(seeded):
        assert any(key_arn in line and f"{GRANT_PREFIX}{rule}" in line for line in planned), (rule, table.stdout)

    status, report = remediate(guard_env)
    assert status == 1
    assert report["remediation"]["mode"] == "dry-run"
    fixes = report["remediation"]["fixes"]
    assert sorted((f["rule"], f["key_arn"]) for f in fixes) == drift_rows(seeded)
    for fix in fixes:
        check_fix(fix, fix["rule"], fix["key_arn"], mode_made=False)
    for finding in report["findings"]:
        assert finding["details"]["remediation_action"]["result"] == "dry run: would be made"

    fn = start("dry-run", REMEDIATION="dry-run")
    body = invoke_ok(fn)
    assert body["remediation"]["mode"] == "dry-run" and len(body["remediation"]["fixes"]) == 3
    assert all(f["outcome"] is None and f["verified"] is None for f in body["remediation"]["fixes"])
    found = pages(account, seeded)
    assert sorted((p["rule"], p["resource_arn"]) for p in found) == drift_rows(seeded), "every drift pages"
    for page in found:
        action = page["details"]["remediation_action"]
        assert (action["mode"], action["outcome"], action["result"]) == ("dry-run", None, "dry run: would be made")

    assert writes(proxy) == [], "a dry run only reads"
    assert state(account) == before


# --- 3. off (the default) changes nothing -------------------------------------------------------------------------

def test_off_is_the_default_and_changes_nothing(account, proxy, guard_env, function, start):
    seeded = seed(account, three_grant_drifts())
    before = state(account)
    body = invoke_ok(function)  # the bench's session Lambda: no REMEDIATION set
    assert "remediation" not in body, body
    explicit = invoke_ok(start("off", REMEDIATION="off"))
    assert "remediation" not in explicit
    found = pages(account, seeded)
    assert len(found) == 6 and all("remediation_action" not in p["details"] for p in found)
    audit = subprocess.run([binary("connect-slr-guard"), "audit", "--publish", "--format", "json"],
                           env={**guard_env, "REMEDIATION": "apply"}, capture_output=True, text=True, timeout=120)
    assert audit.returncode == 1, audit.stderr
    assert "remediation" not in json.loads(audit.stdout), "only `remediate` remediates from the CLI"
    assert writes(proxy) == []
    assert state(account) == before


@pytest.mark.parametrize("value", ["on", "true", "Apply", "dryrun"])
def test_a_mistyped_mode_stops_the_function_at_start(guard_env, value):
    """Turning it on by accident must be impossible: anything but off, dry-run or apply fails Init, naming it."""
    log = OUT / f"lambda-remediation-bad-mode-{value}.log"
    fn = LambdaFunction(binary("connect-slr-guard-lambda"), {**guard_env, "REMEDIATION": value}, log_path=log)
    try:
        status = fn.process.wait(30)
        assert not fn.host.first_poll.is_set(), "it never asked for an event"
    finally:
        fn.close()
    assert status != 0
    assert "REMEDIATION" in log.read_text() and value in log.read_text()


# --- 4. a disabled key is not touched -----------------------------------------------------------------------------

@pytest.mark.parametrize("which, key_state", [("domain", "Disabled"), ("storage", "Disabled"),
                                              ("domain", "PendingDeletion"), ("storage", "PendingDeletion")])
def test_an_unusable_key_is_not_touched(account, proxy, guard_env, start, which, key_state):
    """Both keys lack their grant; one is unusable: the other is fixed, the unusable one is left alone."""
    spec = spec_for("profiles-grant-missing")
    spec.storage_grant = False
    setattr(spec, f"{which}_key_state", key_state)
    seeded = seed(account, spec)
    unusable = seeded.key_arn(which)
    usable = seeded.key_arn("storage" if which == "domain" else "domain")
    before = state(account)

    fn = start(f"unusable-{which}-{key_state}", REMEDIATION="apply")
    proxy.set({})
    body = invoke_ok(fn)
    status, report = remediate(guard_env, "--apply")
    for done in (body["remediation"], report["remediation"]):
        assert all(f["key_arn"] != unusable for f in done["fixes"]), done
    assert [f["key_arn"] for f in body["remediation"]["fixes"]] == [usable]
    assert status == 1, "the unusable key's drift remains"
    assert [f["rule"] for f in report["findings"]] == ["KMS_KEY_UNUSABLE"]

    after = state(account)
    assert after["kms"][key_id(unusable)] == before["kms"][key_id(unusable)]
    assert len(guard_grants(account, usable)) == 1
    assert all(key_id(unusable) not in request for request in create_grant_calls(proxy))
    assert after["iam"] == before["iam"]


# --- 5. a role outside the SLR path is never created or modified --------------------------------------------------

def outside_slr(name):
    """(spec, the role the instance names, extra roles to create): drifted so that a grant is also missing."""
    spec = spec_for("profiles-grant-missing")
    spec.storage_grant = False
    if name == "slr-deleted":
        spec.role_exists = False
        return spec, ROLE_ARN, []
    spec.role_exists = False  # the role is created below, under its own name and path
    path, role = {"service-role-path": ("/service-role/", ROLE_NAME),
                  "plain-role": ("/", "ConnectServiceRole"),
                  "another-service-slr-path": ("/aws-service-role/lambda.amazonaws.com/", ROLE_NAME)}[name]
    spec.service_role = role_arn(role, path)
    return spec, spec.service_role, [(role, path)]


@pytest.mark.parametrize("name", ["slr-deleted", "service-role-path", "plain-role", "another-service-slr-path"])
def test_a_role_outside_the_slr_path_is_never_created_or_modified(account, proxy, guard_env, start, name):
    spec, role, extra = outside_slr(name)
    seeded = seed(account, spec)
    iam = account.client("iam")
    for role_name, path in extra:
        create_role(iam, Spec(role_path=path), role_name)
    before = state(account)

    fn = start(f"outside-{name}", REMEDIATION="apply")
    proxy.set({})
    body = invoke_ok(fn)
    status, report = remediate(guard_env, "--apply")
    assert status == 1, report
    for done in (body["remediation"], report["remediation"]):
        assert done["fixes"] == [], "no grant to a role that is not the instance's Connect SLR"
    assert writes(proxy) == [], "nothing written to IAM or KMS"
    assert not any(op in ("CreateServiceLinkedRole", "CreateRole") for _, op, _ in proxy.calls)
    assert state(account) == before
    assert iam.list_roles(PathPrefix=SLR_PATH)["Roles"] == [], "no SLR created"
    for key_arn in (seeded.domain_key, seeded.storage_key):
        assert all(g[0] != role for g in grants(account, key_arn))

    found = pages(account, seeded)
    if name == "slr-deleted":
        [refusal] = report["remediation"]["refusals"]
        assert (refusal["rule"], refusal["resource_arn"]) == ("CONNECT_SLR_MISSING", ROLE_ARN)
        assert "does not recreate service-linked roles" in refusal["reason"]
        assert body["remediation"]["refusals"] == report["remediation"]["refusals"]
        [page] = found
        assert page["rule"] == "CONNECT_SLR_MISSING"
        assert page["details"]["remediation_action"] == {"mode": "apply", "result": "refused",
                                                         "reason": refusal["reason"]}
    else:
        # The rules judge no grant for a role that is not Connect's SLR: the role is the drift, and its page
        # names it; there is nothing for remediation to plan or refuse.
        assert [(p["rule"], p["resource_arn"]) for p in found] == [("CONNECT_SLR_NOT_SERVICE_LINKED", role)]
        assert "remediation_action" not in found[0]["details"]


def test_a_key_policy_that_does_not_let_the_guard_grant_is_refused(account, proxy, guard_env, start):
    seeded = seed(account, spec_for("profiles-grant-missing"))
    kms = account.client("kms")
    policy = json.loads(kms.get_key_policy(KeyId=seeded.domain_key, PolicyName="default")["Policy"])
    policy["Statement"].append({"Sid": "NoGrants", "Effect": "Deny", "Principal": "*", "Action": "kms:CreateGrant",
                                "Resource": "*"})
    kms.put_key_policy(KeyId=seeded.domain_key, PolicyName="default", Policy=json.dumps(policy))
    before = state(account)
    body = invoke_ok(start("policy-denies-grants", REMEDIATION="apply"))
    status, report = remediate(guard_env, "--apply")
    assert status == 1
    for done in (body["remediation"], report["remediation"]):
        [refusal] = done["refusals"]
        assert (refusal["rule"], refusal["resource_arn"]) == ("PROFILES_KMS_GRANT_MISSING", seeded.domain_key)
        assert "key policy" in refusal["reason"] and done["fixes"] == []
    [page] = pages(account, seeded)
    assert page["details"]["remediation_action"]["result"] == "refused"
    assert create_grant_calls(proxy) == [] and state(account) == before


# --- 6. the action cap ----------------------------------------------------------------------------------------------

def test_more_fixes_than_the_cap_makes_none_and_pages_every_drift(account, proxy, guard_env, start):
    seeded = seed(account, three_grant_drifts())
    before = state(account)
    fn = start("cap", REMEDIATION="apply", REMEDIATION_MAX_ACTIONS="2")
    proxy.set({})
    body = invoke_ok(fn)
    done = body["remediation"]
    assert (done["over_cap"], done["max_actions"], len(done["fixes"])) == (True, 2, 3), done
    assert all(f["outcome"] is None and f["verified"] is None for f in done["fixes"])
    found = pages(account, seeded)
    assert sorted((p["rule"], p["resource_arn"]) for p in found) == drift_rows(seeded)
    for page in found:
        result = page["details"]["remediation_action"]["result"]
        assert result.startswith("not made") and "REMEDIATION_MAX_ACTIONS=2" in result, result

    status, report = remediate(guard_env, "--apply", "--max-actions", "2")
    assert status == 1 and report["remediation"]["over_cap"] is True
    assert create_grant_calls(proxy) == [] and state(account) == before, "over the cap, nothing is made"

    status, report = remediate(guard_env, "--apply", "--max-actions", "3")
    assert status == 0 and report["remediation"]["over_cap"] is False
    assert all(f["verified"] for f in report["remediation"]["fixes"])
    for _, key_arn in drift_rows(seeded):
        assert len(guard_grants(account, key_arn)) == 1


def test_a_cap_of_zero_never_acts(account, proxy, guard_env):
    seed(account, spec_for("profiles-grant-missing"))
    before = state(account)
    status, report = remediate({**guard_env, "REMEDIATION_MAX_ACTIONS": "0"}, "--apply")
    assert status == 1 and report["remediation"]["over_cap"] is True
    assert create_grant_calls(proxy) == [] and state(account) == before


# --- 7. a failed fix pages REMEDIATION_FAILED -----------------------------------------------------------------------

# KMS denies the guard's CreateGrant (its body names the grant), and nothing else.
DENY_GRANT = {"kms": {"mode": "deny", "match": GRANT_PREFIX}}


def check_remediation_failed(page, seeded, catalogue):
    assert (page["rule"], page["severity"]) == ("REMEDIATION_FAILED", "HIGH")
    assert catalogue["REMEDIATION_FAILED"]["severity"] == "HIGH"
    assert (page["status"], page["instance_arn"], page["resource_arn"]) == ("OPEN", I1, seeded.domain_key)
    assert page["details"]["drift"] == "PROFILES_KMS_GRANT_MISSING"
    assert page["remediation"].startswith(f"aws kms create-grant --key-id {seeded.domain_key}"), \
        "the manual fix of the drift it could not clear"
    assert re.fullmatch(r"[0-9a-f]{32}", page["fingerprint"])


def test_a_denied_fix_pages_remediation_failed(account, proxy, guard_env, start, catalogue):
    seeded = seed(account, spec_for("profiles-grant-missing"))
    fn = start("denied", REMEDIATION="apply")
    proxy.set(DENY_GRANT)
    body = invoke_ok(fn)
    assert len(create_grant_calls(proxy)) == 1 and proxy.counts_of("kms")["faulted"] == 1
    [fix] = body["remediation"]["fixes"]
    assert fix["outcome"]["result"] == "failed" and "AccessDenied" in fix["outcome"]["reason"], fix
    assert fix["verified"] is False
    assert guard_grants(account, seeded.domain_key) == []

    found = pages(account, seeded)
    assert [p["rule"] for p in found] == ["PROFILES_KMS_GRANT_MISSING", "REMEDIATION_FAILED"]
    assert body["alerts_published"] == 2
    drift, failed = found
    check_remediation_failed(failed, seeded, catalogue)
    assert failed["details"]["outcome"]["result"] == "failed"
    assert failed["details"]["fingerprints"] == [drift["fingerprint"]]
    assert drift["details"]["remediation_action"]["outcome"]["result"] == "failed"
    assert "REMEDIATION_FAILED" in drift["details"]["remediation_action"]["result"]

    proxy.set(DENY_GRANT)
    status, report = remediate(guard_env, "--apply")
    assert status == 2, report
    assert "REMEDIATION_FAILED" in [f["rule"] for f in report["findings"]]
    assert guard_grants(account, seeded.domain_key) == []


class KmsShim:
    """Between the guard and the fault proxy: can answer KMS CreateGrant itself (success, and no grant made), and
    deny ListGrants once it has. Everything else goes on to the proxy."""

    def __init__(self, upstream):
        self.swallow_create = False
        self.deny_list_after_create = False
        self.created = 0
        shim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _send(self, status, headers, body):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = self.headers.get("X-Amz-Target", "")
                if target == "TrentService.CreateGrant" and shim.swallow_create:
                    shim.created += 1
                    answer = json.dumps({"GrantId": f"swallowed-{shim.created}", "GrantToken": "t"}).encode()
                    return self._send(200, {"Content-Type": "application/x-amz-json-1.1"}, answer)
                if target == "TrentService.ListGrants" and shim.deny_list_after_create and shim.created:
                    return self._send(*error_response("kms", "deny"))
                return self._send(*FaultProxy.forward(upstream, self.command, self.path, dict(self.headers), body))

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def shim(proxy, guard_env):
    """(KmsShim, the guard's environment through it)."""
    s = KmsShim(proxy.url)
    yield s, {**guard_env, "AWS_ENDPOINT_URL": s.url}
    s.close()


def test_a_grant_that_never_appears_pages_remediation_failed(account, shim, catalogue):
    kms_shim, env = shim
    kms_shim.swallow_create = True
    seeded = seed(account, spec_for("profiles-grant-missing"))
    status, report = remediate(env, "--apply")
    assert status == 2, report
    [fix] = report["remediation"]["fixes"]
    assert fix["outcome"] == {"result": "applied", "grant_id": "swallowed-1"} and fix["verified"] is False
    assert guard_grants(account, seeded.domain_key) == []
    [failed] = [f for f in report["findings"] if f["rule"] == "REMEDIATION_FAILED"]
    check_remediation_failed({**failed, "status": "OPEN"}, seeded, catalogue)
    assert failed["details"]["outcome"]["grant_id"] == "swallowed-1"


def test_a_fix_the_reread_cannot_see_is_not_called_verified(account, shim):
    kms_shim, env = shim
    kms_shim.swallow_create = True  # no grant is made ...
    kms_shim.deny_list_after_create = True  # ... and the re-read cannot list the grants
    seed(account, spec_for("profiles-grant-missing"))
    status, report = remediate(env, "--apply")
    [fix] = report["remediation"]["fixes"]
    assert fix["verified"] is not True, "the guard never saw the grant"
    assert status != 0, report


def test_a_storage_fix_grants_what_the_storage_needs(account, guard_env):
    seeded = seed(account, spec_for("storage-grant-missing"))
    status, report = remediate({**guard_env, "REQUIRED_GRANT_OPERATIONS": "Decrypt,DescribeKey"}, "--apply")
    assert [f["verified"] for f in report["remediation"]["fixes"]] == [True, True], report["remediation"]
    assert status == 0
    assert len(guard_grants(account, seeded.storage_key)) == 1


# --- 8. the audit trail in the ledger, and the passes that never remediate ----------------------------------------

def action_items(account):
    table = account.client("dynamodb")
    items = []
    for page in table.get_paginator("scan").paginate(TableName=TABLE):
        items += [i for i in page["Items"] if i.get("kind", {}).get("S") == "action"]
    return sorted(items, key=lambda i: i["pk"]["S"])


def check_action_item(item, key_arn, rule, grant_id, trigger_kind, since):
    m = re.fullmatch(rf"action#(\d+)#{GRANT_PREFIX}{rule}#[0-9a-f+]+", item["pk"]["S"])
    assert m, item["pk"]
    at = int(m.group(1))
    assert since - 1 <= at <= time.time() + 1
    assert int(item["ttl"]["N"]) - at >= 365 * 86_400, "kept for more than a year"
    action = json.loads(item["action"]["S"])
    assert (action["mode"], action["account"], action["region"]) == ("apply", ACCOUNT, REGION)
    assert action["trigger"]["kind"] == trigger_kind
    fix = action["fix"]
    assert (fix["key_arn"], fix["grantee"], fix["operations"], fix["grant_name"]) == \
        (key_arn, ROLE_ARN, REQUIRED, f"{GRANT_PREFIX}{rule}")
    assert fix["outcome"] == {"result": "applied", "grant_id": grant_id} and fix["verified"] is True


def test_each_fix_made_is_kept_in_the_ledger(account, ledger_env, start):
    seeded = seed(account, spec_for("profiles-grant-missing"))
    status, _ = remediate(ledger_env)
    assert status == 1 and action_items(account) == [], "a dry run makes no action, so records none"

    since = time.time()
    status, _ = remediate(ledger_env, "--apply")
    assert status == 0
    [(_, _, _, grant_id)] = guard_grants(account, seeded.domain_key)
    [item] = action_items(account)
    check_action_item(item, seeded.domain_key, "PROFILES_KMS_GRANT_MISSING", grant_id, "audit", since)

    # The grant is revoked again: the Lambda's next pass puts it back, and keeps a second item. (A second later:
    # items of one grant name in one second overwrite each other, see the next test.)
    time.sleep(1.05)
    account.client("kms").revoke_grant(KeyId=key_id(seeded.domain_key), GrantId=grant_id)
    fn = start("ledger", env=ledger_env, REMEDIATION="apply")
    since = time.time()
    body = invoke_ok(fn)
    assert body["remediation"]["fixes"][0]["verified"] is True
    [(_, _, _, again)] = guard_grants(account, seeded.domain_key)
    items = action_items(account)
    assert len(items) == 2, "the first item is kept"
    [second] = [i for i in items if json.loads(i["action"]["S"])["fix"]["outcome"]["grant_id"] == again]
    check_action_item(second, seeded.domain_key, "PROFILES_KMS_GRANT_MISSING", again, "schedule", since)
    [page] = pages(account, seeded)
    assert page["details"]["remediation_action"]["result"].startswith("made and verified")

    body = invoke_ok(fn)  # the ledger's state scan reads past the audit items
    assert body["findings"] == [] and len(action_items(account)) == 2
    assert [p["status"] for p in pages(account, seeded)] == ["RESOLVED"]


def test_every_fix_of_a_pass_is_kept_even_two_of_one_rule(account, ledger_env):
    """The recordings' key and the stream's key both lack their grant (two STORAGE_KMS_GRANT_MISSING, so two grants
    of one name), and the domain key's is incomplete: three fixes in one pass, three audit items."""
    seeded = seed(account, three_grant_drifts())
    status, report = remediate(ledger_env, "--apply")
    assert status == 0, report
    made = {f["outcome"]["grant_id"]: f["key_arn"] for f in report["remediation"]["fixes"]}
    assert sorted(made.values()) == sorted(k for _, k in drift_rows(seeded))
    fixes = [json.loads(i["action"]["S"])["fix"] for i in action_items(account)]
    recorded = {fix["outcome"]["grant_id"]: fix["key_arn"] for fix in fixes}
    assert recorded == made, "one audit item per fix made"


def now_event(scenario, seeded, name):
    event = event_for(scenario, seeded, sample_event(name))
    event["detail"]["eventTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return event


def test_a_held_pass_and_an_ignored_event_never_remediate(account, proxy, ledger_env, start):
    sqs = account.client("sqs")
    recheck_queue = sqs.create_queue(QueueName="connect-slr-guard-rechecks")["QueueUrl"]
    scenario = SCENARIOS["profiles-grant-missing"]
    seeded = seed(account, spec_for(scenario.name))
    before = state(account)
    fn = start("held", env=ledger_env, REMEDIATION="apply", SETTLE_WINDOW="60s", RECHECK_QUEUE_URL=recheck_queue)
    proxy.set({})
    body = invoke_ok(fn, now_event(scenario, seeded, "kms-revoke-grant.json"))
    assert (body["held"], body["rechecks_scheduled"]) == (1, 1), body
    assert "remediation" not in body, "a settling KMS change is not acted on"
    ok, ignored = fn.invoke(json.loads(sample_event("ignored-s3-put-object.json")))
    assert ok and "ignored" in ignored, ignored
    assert writes(proxy) == [] and state(account) == before
    assert pages(account, seeded) == [] and action_items(account) == []
