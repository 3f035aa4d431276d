"""Checks on template.yaml and deploy/iam-forwarder.yaml (run by scripts/lint-template.sh).

- Least privilege: every action the function's role grants is in ALLOWED, on
  the resources ALLOWED names for it; no wildcard actions, no NotAction or
  NotResource, no managed policies. A deliberately widened copy of the
  template (iam:PassRole, kms:*, sns:Publish on "*", ...) must fail the same
  check. The optional outputs' grants (securityhub:BatchImportFindings on the
  default product, sns:Publish on the chat topic) exist only when their
  parameter asks for them: the conditions are evaluated per parameter set.
- Event patterns: every sample in events/ is matched by the rule meant for it
  (moto's EventBridge pattern matcher), the ignored samples and failed calls
  by none; every trigger the guard handles (`connect-slr-guard triggers`) is
  routed, and no other CloudTrail event; the us-east-1 forwarder uses exactly
  the guard's IAM pattern.
- Completeness: the SAM translation lints clean, and the function has its
  build method, arm64 default, JSON logs, retention, retries, on-failure
  queue, alarms and reserved concurrency; the dashboard's body renders to
  JSON and charts the guard's own metrics (EMF_METRICS) and the deployed
  function and failure queue. The metrics are opt-in (Metrics, off by
  default, told to the function as METRICS): the dashboard, the
  ChecksIncompleteAlarm on them and the dashboard's outputs exist exactly
  when they are on; a copy with either made unconditional fails the check.

The template is parsed with cfn-lint's CloudFormation-aware loader
(cfnlint.decode), so !Ref/!Sub/!GetAtt/!If arrive as {"Ref": ...} etc. and
are compared structurally, never as rendered strings.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from cfnlint.decode import decode, decode_str

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
FORWARDER = REPO / "deploy" / "iam-forwarder.yaml"
EVENTS = REPO / "events"

FUNCTION = "GuardFunction"


def sub(text: str) -> dict:
    return {"Fn::Sub": text}


ANY = "*"

# action -> the resources it may be granted on (structural, as decoded).
# The read actions are exactly those the function calls (README: "The
# identity needs only read access"); the rest are what running it needs:
# publishing to its own topic (and that topic's key), writing its own logs,
# its ledger, and consuming and feeding its own work and re-check queues;
# and, when asked for (OPTIONAL_GRANTS), publishing to the chat topic and
# importing findings into Security Hub through the default product.
SECURITY_HUB_DEFAULT_PRODUCT = sub(
    "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/${AWS::AccountId}/default")
ALLOWED: dict[str, list[Any]] = {
    # No resource-level permissions exist for these four.
    "connect:ListInstances": [ANY],
    "profile:ListAccountIntegrations": [ANY],
    "profile:ListDomains": [ANY],
    # A dependent action of connect:ListInstances and connect:DescribeInstance
    # in the Service Authorization Reference.
    "ds:DescribeDirectories": [ANY],
    "connect:DescribeInstance": [sub("arn:${AWS::Partition}:connect:${AWS::Region}:${AWS::AccountId}:instance/*")],
    "connect:ListInstanceStorageConfigs": [
        sub("arn:${AWS::Partition}:connect:${AWS::Region}:${AWS::AccountId}:instance/*")
    ],
    "profile:GetDomain": [sub("arn:${AWS::Partition}:profile:${AWS::Region}:${AWS::AccountId}:domains/*")],
    **{
        f"iam:{a}": [sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*AWSServiceRoleForAmazonConnect*")]
        for a in (
            "GetRole", "ListAttachedRolePolicies", "ListRolePolicies", "GetRolePolicy",
            "GetServiceLinkedRoleDeletionStatus",
        )
    },
    **{
        f"kms:{a}": [sub("arn:${AWS::Partition}:kms:${AWS::Region}:*:key/*")]
        for a in ("DescribeKey", "ListGrants")
    },
    "kms:GetKeyPolicy": [sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*")],
    "kinesis:DescribeStreamSummary": [sub("arn:${AWS::Partition}:kinesis:${AWS::Region}:${AWS::AccountId}:stream/*")],
    "firehose:DescribeDeliveryStream": [
        sub("arn:${AWS::Partition}:firehose:${AWS::Region}:${AWS::AccountId}:deliverystream/*")
    ],
    "sns:Publish": [{"Ref": "AlertTopic"}, {"Ref": "ExistingAlertTopicArn"},
                    {"Ref": "ChatNotificationTopic"}, {"Ref": "ChatTopic"}],
    "securityhub:BatchImportFindings": [SECURITY_HUB_DEFAULT_PRODUCT],
    **{
        f"kms:{a}": [{"Fn::GetAtt": ["AlertKey", "Arn"]}, {"Ref": "ExistingAlertTopicKmsKeyArn"}]
        for a in ("GenerateDataKey*", "Decrypt")
    },
    "logs:CreateLogStream": [{"Fn::GetAtt": ["GuardLogGroup", "Arn"]}],
    "logs:PutLogEvents": [{"Fn::GetAtt": ["GuardLogGroup", "Arn"]}],
    **{
        f"sqs:{a}": [{"Fn::GetAtt": ["WorkQueue", "Arn"]}, {"Fn::GetAtt": ["RecheckQueue", "Arn"]}]
        for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes", "SendMessage")
    },
    **{f"dynamodb:{a}": [{"Fn::GetAtt": ["LedgerTable", "Arn"]}] for a in ("Scan", "PutItem", "UpdateItem", "DeleteItem")},
}
ALLOWED_LOWER = {k.lower(): v for k, v in ALLOWED.items()}
# The topic key's data-key actions are usable only through SNS.
VIA_SNS = {"kms:generatedatakey*", "kms:decrypt"}
# The one wildcard action allowed: how SNS documents a publisher's access to
# an encrypted topic's key (kms:GenerateDataKey*, kms:Decrypt), on that key
# only and only through SNS.
DOCUMENTED_WILDCARDS = {"kms:generatedatakey*"}


# ------------------------------------------------------------------ helpers
def plain(node: Any) -> Any:
    """cfn-lint's node types -> plain dicts/lists/str (keeps intrinsics as dicts)."""
    return json.loads(json.dumps(node))


def load(path: Path) -> dict:
    template, matches = decode(str(path))
    assert not matches, [str(m) for m in matches]
    return plain(template)


def load_str(text: str) -> dict:
    template, matches = decode_str(text)
    assert not matches, [str(m) for m in matches]
    return plain(template)


def branches(node: Any) -> Iterator[Any]:
    """Every value a node can take: both arms of each Fn::If, AWS::NoValue dropped."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, yes, no = node["Fn::If"]
        yield from branches(yes)
        yield from branches(no)
    elif node == {"Ref": "AWS::NoValue"}:
        return
    else:
        yield node


def as_list(node: Any) -> list:
    out = []
    for value in branches(node):
        for item in value if isinstance(value, list) else [value]:
            out.extend(branches(item))
    return out


NO_VALUE = object()


def effective(template: dict, parameters: dict[str, str] | None = None) -> dict:
    """The template as CloudFormation takes it with these parameters (the
    rest at their defaults): each Fn::If on the branch its condition takes,
    AWS::NoValue dropped, resources and outputs whose Condition is false gone."""
    values = {name: str(spec["Default"]) for name, spec in template["Parameters"].items() if "Default" in spec}
    values.update(parameters or {})
    values["AWS::Region"] = "eu-west-2"
    held: dict[str, bool] = {}

    def value(node: Any) -> str:
        if isinstance(node, dict):
            [(key, name)] = node.items()
            assert key == "Ref", f"condition argument {node}: not evaluated here"
            return values[name]
        return str(node)

    def holds(name: str) -> bool:
        if name not in held:
            held[name] = evaluate(template["Conditions"][name])
        return held[name]

    def evaluate(node: dict) -> bool:
        [(key, argument)] = node.items()
        if key == "Condition":
            return holds(argument)
        if key == "Fn::Equals":
            left, right = map(value, argument)
            return left == right
        if key == "Fn::Not":
            return not evaluate(argument[0])
        if key in ("Fn::And", "Fn::Or"):
            results = [evaluate(a) for a in argument]
            return all(results) if key == "Fn::And" else any(results)
        raise AssertionError(f"condition function {key}: not evaluated here")

    def take(node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in map(take, node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        if set(node) == {"Fn::If"}:
            name, yes, no = node["Fn::If"]
            return take(yes if holds(name) else no)
        taken = {k: take(v) for k, v in node.items()}
        return {k: v for k, v in taken.items() if v is not NO_VALUE}

    out = {key: take(section) for key, section in template.items() if key != "Conditions"}
    for key in ("Resources", "Outputs"):
        out[key] = {i: r for i, r in out.get(key, {}).items() if "Condition" not in r or holds(r["Condition"])}
    return out


def role_of_function(template: dict) -> tuple[str, list[str]]:
    """The logical id of the function's role, plus problems with how it is given."""
    props = template["Resources"][FUNCTION]["Properties"]
    problems = []
    if "Policies" in props:
        problems.append(f"{FUNCTION} has SAM Policies: grant through its explicit role only")
    role = props.get("Role")
    if not (isinstance(role, dict) and role.get("Fn::GetAtt", [None, None])[1] == "Arn"):
        problems.append(f"{FUNCTION} must use an explicit role from this template (Role: !GetAtt X.Arn)")
        return "", problems
    return role["Fn::GetAtt"][0], problems


def function_statements(template: dict) -> tuple[list[dict], list[str]]:
    """All policy statements that reach the function's role, with problems found on the way."""
    role_id, problems = role_of_function(template)
    if not role_id:
        return [], problems
    resources = template["Resources"]
    role = resources[role_id]
    assert role["Type"] == "AWS::IAM::Role", role_id
    props = role["Properties"]
    for key in ("ManagedPolicyArns",):
        if as_list(props.get(key, [])):
            problems.append(f"{role_id} has {key}: managed policies cannot be checked, inline only")
    documents = [p["PolicyDocument"] for p in as_list(props.get("Policies", []))]
    for name, res in resources.items():
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::RolePolicy", "AWS::IAM::ManagedPolicy"):
            rp = res["Properties"]
            roles = as_list(rp.get("Roles", [])) + as_list(rp.get("RoleName", []))
            if {"Ref": role_id} in roles:
                documents.append(rp["PolicyDocument"])
    statements = []
    for doc in documents:
        for st in as_list(doc.get("Statement", [])):
            statements.append(st)
    return statements, problems


def violations(template: dict) -> list[str]:
    """Everything the function's role may do beyond ALLOWED. Empty means least privilege holds."""
    statements, problems = function_statements(template)
    for st in statements:
        sid = st.get("Sid", "<no Sid>")
        if st.get("Effect") == "Deny":
            continue  # a Deny can only narrow
        if st.get("Effect") != "Allow":
            problems.append(f"{sid}: Effect must be Allow or Deny")
            continue
        for key in ("NotAction", "NotResource", "NotPrincipal"):
            if key in st:
                problems.append(f"{sid}: {key} grants everything else")
        actions = as_list(st.get("Action", []))
        resources = as_list(st.get("Resource", []))
        if not actions:
            problems.append(f"{sid}: no Action")
        for action in actions:
            if not isinstance(action, str):
                problems.append(f"{sid}: computed action {action!r}")
                continue
            lowered = action.lower()
            if ("*" in action or "?" in action) and lowered not in DOCUMENTED_WILDCARDS:
                problems.append(f"{sid}: wildcard action {action}")
                continue
            if lowered not in ALLOWED_LOWER:
                problems.append(f"{sid}: {action} is not an action the function needs")
                continue
            for resource in resources:
                if resource not in ALLOWED_LOWER[lowered]:
                    problems.append(f"{sid}: {action} on {json.dumps(resource)} (allowed: {ALLOWED_LOWER[lowered]})")
            if lowered in VIA_SNS:
                via = st.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
                if via != sub("sns.${AWS::Region}.amazonaws.com"):
                    problems.append(f"{sid}: {action} must be limited to kms:ViaService sns.<region>")
    return problems


def widened(template: dict, statement: dict) -> dict:
    t = copy.deepcopy(template)
    role_id, _ = role_of_function(t)
    t["Resources"][role_id]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(statement)
    return t


# ---------------------------------------------------------- least privilege
@pytest.fixture(scope="module")
def template() -> dict:
    return load(TEMPLATE)


def test_function_role_is_least_privilege(template):
    assert violations(template) == []


def test_every_allowed_action_is_granted(template):
    """The allowed list is not stale: each action in it is actually granted."""
    statements, _ = function_statements(template)
    granted = {a.lower() for st in statements for a in as_list(st.get("Action", []))}
    assert granted == set(ALLOWED_LOWER)


def test_no_wildcard_actions_on_iam_or_kms_anywhere_in_the_functions_role(template):
    statements, _ = function_statements(template)
    for st in statements:
        for action in as_list(st.get("Action", [])):
            if action.lower() in DOCUMENTED_WILDCARDS:
                assert as_list(st["Resource"]) in ([{"Fn::GetAtt": ["AlertKey", "Arn"]}], [{"Ref": "ExistingAlertTopicKmsKeyArn"}])
                assert st["Condition"] == {"StringEquals": {"kms:ViaService": sub("sns.${AWS::Region}.amazonaws.com")}}
            elif action.lower().startswith(("iam:", "kms:")):
                assert "*" not in action and "?" not in action, action


ALERT_TOPIC = {"Ref": "AlertTopic"}
CREATED_CHAT_TOPIC, EXISTING_CHAT_TOPIC = {"Ref": "ChatNotificationTopic"}, {"Ref": "ChatTopic"}
A_CHAT_TOPIC_ARN = "arn:aws:sns:eu-west-2:111122223333:on-call-chat"

# Parameters -> what the role may publish to and import into (None: no grant).
OPTIONAL_GRANTS = [
    ({}, [ALERT_TOPIC], None),
    ({"SecurityHub": "on"}, [ALERT_TOPIC], [SECURITY_HUB_DEFAULT_PRODUCT]),
    ({"ChatTopic": "create"}, [ALERT_TOPIC, CREATED_CHAT_TOPIC], None),
    ({"ChatTopic": A_CHAT_TOPIC_ARN}, [ALERT_TOPIC, EXISTING_CHAT_TOPIC], None),
    ({"ChatTopic": "create", "SecurityHub": "on"}, [ALERT_TOPIC, CREATED_CHAT_TOPIC], [SECURITY_HUB_DEFAULT_PRODUCT]),
]


def granted_resources(template: dict, action: str) -> list | None:
    """The resources the role is granted an action on (None: not granted)."""
    statements, _ = function_statements(template)
    found = [st for st in statements if action.lower() in {a.lower() for a in as_list(st.get("Action", []))}]
    return [r for st in found for r in as_list(st.get("Resource", []))] if found else None


def optional_grant_problems(template: dict) -> list[str]:
    """Each optional output's grant exists exactly when its parameter asks for it."""
    problems = []
    for parameters, publish, findings in OPTIONAL_GRANTS:
        t = effective(template, parameters)
        for action, want in (("sns:Publish", publish), ("securityhub:BatchImportFindings", findings)):
            got = granted_resources(t, action)
            if got != want:
                problems.append(f"{parameters or 'defaults'}: {action} on {got}, expected {want}")
        problems += [f"{parameters or 'defaults'}: {v}" for v in violations(t)]
    return problems


def test_optional_outputs_are_granted_only_when_asked_for_and_only_on_their_target(template):
    assert optional_grant_problems(template) == []


def test_the_function_is_told_the_topics_it_may_publish_to(template):
    env = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert env["ALERT_TOPIC_ARN"] == {"Fn::If": ["CreateTopic", {"Ref": "AlertTopic"}, {"Ref": "ExistingAlertTopicArn"}]}
    # Without a chat topic, CHAT_TOPIC_ARN is the empty parameter: off, by the function's contract.
    for chat, want in (("", EXISTING_CHAT_TOPIC), ("create", CREATED_CHAT_TOPIC), (A_CHAT_TOPIC_ARN, EXISTING_CHAT_TOPIC)):
        t = effective(template, {"ChatTopic": chat})
        env = t["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
        assert env["CHAT_TOPIC_ARN"] == want, chat
        assert ("ChatNotificationTopic" in t["Resources"]) == (chat == "create"), chat
        assert ("ChatTopicArn" in t["Outputs"]) == (chat != ""), chat
        if chat:
            assert t["Outputs"]["ChatTopicArn"]["Value"] == env["CHAT_TOPIC_ARN"]


def test_security_hub_is_off_by_default_and_told_to_the_function(template):
    spec = template["Parameters"]["SecurityHub"]
    # Strings: a bare on/off in YAML would arrive as a boolean.
    assert (spec["Default"], spec["AllowedValues"]) == ("off", ["off", "on"])
    env = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert env["SECURITY_HUB"] == {"Ref": "SecurityHub"}


def test_chat_topic_takes_create_an_sns_topic_arn_or_nothing(template):
    pattern = re.compile(template["Parameters"]["ChatTopic"]["AllowedPattern"])
    for ok in ("", "create", A_CHAT_TOPIC_ARN, "arn:aws-us-gov:sns:us-gov-west-1:111122223333:chat_1"):
        assert pattern.fullmatch(ok), ok
    for bad in ("Create", "yes", "arn:aws:sqs:eu-west-2:111122223333:chat", "arn:aws:sns:eu-west-2:1111:chat", "create,"):
        assert not pattern.fullmatch(bad), bad
    assert template["Parameters"]["ChatTopic"]["Default"] == ""


def test_a_created_chat_topic_is_encrypted_with_a_key_the_function_may_use(template):
    # With the alert key: the role's AlertTopicKey statement already covers it.
    t = effective(template, {"ChatTopic": "create"})
    assert t["Resources"]["ChatNotificationTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "AlertKey"}
    assert granted_resources(t, "kms:GenerateDataKey*") == [{"Fn::GetAtt": ["AlertKey", "Arn"]}]
    # Without one (an existing alert topic): the AWS managed key, whose own
    # policy lets the account's principals use it through SNS.
    t = effective(template, {"ChatTopic": "create", "ExistingAlertTopicArn": "arn:aws:sns:eu-west-2:111122223333:alerts"})
    assert "AlertKey" not in t["Resources"]
    assert t["Resources"]["ChatNotificationTopic"]["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"


def unconditional(template: dict, sid: str) -> dict:
    """A copy in which the role's statement `sid` no longer depends on its condition."""
    t = copy.deepcopy(template)
    for policy in t["Resources"]["GuardRole"]["Properties"]["Policies"]:
        statements = policy["PolicyDocument"]["Statement"]
        for i, st in enumerate(statements):
            if isinstance(st, dict) and set(st) == {"Fn::If"} and st["Fn::If"][1].get("Sid") == sid:
                statements[i] = st["Fn::If"][1]
                return t
    raise AssertionError(f"no conditional statement {sid}")


@pytest.mark.parametrize("sid", ["PublishChat", "ImportFindings"])
def test_an_optional_grant_made_unconditional_fails_the_check(template, sid):
    assert optional_grant_problems(unconditional(template, sid))


WIDENINGS = {
    "iam:PassRole": {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"},
    "kms:*": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
    "iam:Get*": {"Effect": "Allow", "Action": ["iam:Get*"], "Resource": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*")},
    "kms:CreateGrant": {"Effect": "Allow", "Action": "kms:CreateGrant", "Resource": sub("arn:${AWS::Partition}:kms:${AWS::Region}:*:key/*")},
    "sns:Publish on *": {"Effect": "Allow", "Action": "sns:Publish", "Resource": "*"},
    "sns:Publish on every topic of the account": {
        "Effect": "Allow", "Action": "sns:Publish",
        "Resource": sub("arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:*"),
    },
    "securityhub:BatchImportFindings on *": {"Effect": "Allow", "Action": "securityhub:BatchImportFindings", "Resource": "*"},
    "securityhub:BatchImportFindings on any product": {
        "Effect": "Allow", "Action": "securityhub:BatchImportFindings",
        "Resource": sub("arn:${AWS::Partition}:securityhub:${AWS::Region}:*:product/*/*"),
    },
    "securityhub:BatchUpdateFindings": {
        "Effect": "Allow", "Action": "securityhub:BatchUpdateFindings", "Resource": SECURITY_HUB_DEFAULT_PRODUCT,
    },
    "securityhub:*": {"Effect": "Allow", "Action": "securityhub:*", "Resource": SECURITY_HUB_DEFAULT_PRODUCT},
    "iam:GetRole on every role": {"Effect": "Allow", "Action": "iam:GetRole", "Resource": "*"},
    "kms:Decrypt on every key": {
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": sub("sns.${AWS::Region}.amazonaws.com")}},
    },
    "kms:Decrypt not via SNS": {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": {"Fn::GetAtt": ["AlertKey", "Arn"]}},
    "NotAction": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
    "dynamodb:PutItem (no ledger table)": {"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*"},
    "hidden in Fn::If": {
        "Fn::If": ["CreateTopic", {"Ref": "AWS::NoValue"}, {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]
    },
}


@pytest.mark.parametrize("name", list(WIDENINGS))
def test_a_widened_policy_fails_the_check(template, name):
    assert violations(widened(template, WIDENINGS[name])), f"widening {name!r} was not caught"


def test_a_managed_policy_on_the_role_fails_the_check(template):
    t = copy.deepcopy(template)
    t["Resources"]["GuardRole"]["Properties"]["ManagedPolicyArns"] = ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    assert violations(t)


def test_sam_policies_on_the_function_fail_the_check(template):
    t = copy.deepcopy(template)
    t["Resources"][FUNCTION]["Properties"]["Policies"] = ["AWSLambdaBasicExecutionRole"]
    assert violations(t)


def test_a_widened_copy_of_the_template_file_fails(template):
    """The same check, on the YAML text, as an operator would widen it."""
    text = TEMPLATE.read_text()
    anchor = "                Action: [kms:DescribeKey, kms:ListGrants]\n"
    assert text.count(anchor) == 1
    bad = text.replace(anchor, "                Action: [kms:DescribeKey, kms:ListGrants, kms:CreateGrant]\n")
    assert violations(load_str(text)) == []
    assert any("kms:CreateGrant" in v for v in violations(load_str(bad)))


# ----------------------------------------------------------- event patterns
EventPattern = pytest.importorskip("moto.events.models").EventPattern


def rules(template: dict) -> dict[str, dict]:
    """Event-pattern rules -> pattern."""
    return {
        name: res["Properties"]["EventPattern"]
        for name, res in template["Resources"].items()
        if res["Type"] == "AWS::Events::Rule" and "EventPattern" in res["Properties"]
    }


def all_rules(template: dict) -> dict[str, dict]:
    """Every EventBridge rule (patterns and the schedule) -> its properties."""
    return {n: r["Properties"] for n, r in template["Resources"].items() if r["Type"] == "AWS::Events::Rule"}


def matching(template: dict, event: dict) -> list[str]:
    return [name for name, pattern in rules(template).items() if EventPattern.load(json.dumps(pattern)).matches_event(event)]


CLOUDTRAIL = "AWS API Call via CloudTrail"


def expected_rule(filename: str) -> str | None:
    detail_type = sample(filename)["detail-type"]
    if filename.startswith("ignored-") or detail_type == "Scheduled Event":
        return None
    if detail_type != CLOUDTRAIL:
        return "KmsKeyEvents"  # KMS's own events: key deletion, imported key material expiration
    prefix = filename.split("-", 1)[0]
    return {"iam": "IamEvents", "connect": "ConnectEvents", "profiles": "ProfilesEvents", "kms": "KmsApiEvents"}[prefix]


SAMPLES = sorted(p.name for p in EVENTS.glob("*.json"))


def test_there_are_samples():
    assert len(SAMPLES) >= 30


@pytest.mark.parametrize("filename", SAMPLES)
def test_each_sample_event_is_routed_by_exactly_its_rule(template, filename):
    event = json.loads((EVENTS / filename).read_text())
    want = expected_rule(filename)
    assert matching(template, event) == ([want] if want else [])


def test_the_schedule_drives_the_sweep(template):
    sweep = [r for r in all_rules(template).values() if "ScheduleExpression" in r]
    assert len(sweep) == 1
    assert sweep[0]["ScheduleExpression"] == {"Ref": "SweepSchedule"}
    assert template["Parameters"]["SweepSchedule"]["Default"] == "rate(1 hour)"


WORK_GROUP = sub("${AWS::AccountId}:${AWS::Region}")


def test_every_rule_feeds_the_work_queue_in_the_accounts_group_with_retries_and_a_dead_letter_queue(template):
    """One path for every pass: events and the sweep alike, one message group per account and Region."""
    for name, rule in all_rules(template).items():
        [target] = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}, name
        assert target["SqsParameters"] == {"MessageGroupId": WORK_GROUP}, name
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["FailureQueue", "Arn"]}}, name
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 185, name
    assert len(all_rules(template)) == 6


def sample(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_failed_calls_are_not_routed(template):
    for name in SAMPLES:
        if expected_rule(name) and sample(name)["detail-type"] == CLOUDTRAIL:
            event = sample(name)
            event["detail"]["errorCode"] = "AccessDenied"
            event["detail"]["errorMessage"] = "User is not authorized"
            assert matching(template, event) == [], name


def test_create_service_linked_role_is_matched_by_name_alone(template):
    """The service name's casing in the record is not part of the pattern: the
    guard checks it (ignoring case) and ignores other services' roles."""
    other_slr = sample("iam-create-service-linked-role.json")
    other_slr["detail"]["requestParameters"] = {"AWSServiceName": "elasticbeanstalk.amazonaws.com"}
    assert matching(template, other_slr) == ["IamEvents"]
    assert "aWSServiceName" not in json.dumps(rules(template))


def test_unrelated_iam_and_kms_calls_are_not_routed(template):
    read_only = sample("iam-delete-role.json")
    read_only["detail"]["eventName"] = "GetRole"
    assert matching(template, read_only) == []

    other_grantee = sample("kms-create-grant.json")
    other_grantee["detail"]["requestParameters"]["granteePrincipal"] = "arn:aws:iam::111122223333:role/ebs-thing"
    assert matching(template, other_grantee) == []

    path_less = sample("kms-create-grant.json")
    path_less["detail"]["requestParameters"]["granteePrincipal"] = (
        "arn:aws:iam::111122223333:role/AWSServiceRoleForAmazonConnect_AbCdEf123456"
    )
    assert matching(template, path_less) == ["KmsApiEvents"]


def test_role_names_match_without_regard_to_case(template):
    """IAM role names are case-insensitive; so are the IAM patterns."""
    lower = sample("iam-delete-role.json")
    lower["detail"]["requestParameters"]["roleName"] = "awsserviceroleforamazonconnect_abcdef123456"
    assert matching(template, lower) == ["IamEvents"]


@pytest.fixture(scope="module")
def triggers() -> list[dict]:
    """The triggers the guard handles: `connect-slr-guard triggers --format json`."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/connect-slr-guard/target"))
    binary = Path(os.environ.get("GUARD_BIN_DIR", target / "debug")) / "connect-slr-guard"
    if not binary.exists():
        pytest.fail(f"{binary} not built: run `cargo build` first (scripts/test.sh does), or set GUARD_BIN_DIR")
    result = subprocess.run([str(binary), "triggers", "--format", "json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"`connect-slr-guard triggers --format json` failed: {result.stderr}"
    return json.loads(result.stdout)


def pattern_event_names(pattern: dict) -> set[str]:
    detail = pattern.get("detail", {})
    names = set(detail.get("eventName", []))
    for alt in detail.get("$or", []):
        names |= set(alt.get("eventName", []))
    return names


CLOUDTRAIL_RULES = {"aws.iam": "IamEvents", "aws.connect": "ConnectEvents", "aws.profile": "ProfilesEvents",
                    "aws.kms": "KmsApiEvents"}


def test_every_cloudtrail_event_the_guard_handles_is_routed(template, triggers):
    """The patterns and the trigger parser must change together."""
    r = rules(template)
    cloudtrail = [t for t in triggers if t["event_name"] is not None]
    assert {t["source"] for t in cloudtrail} == set(CLOUDTRAIL_RULES), "a CloudTrail source without a rule"
    for source, rule in CLOUDTRAIL_RULES.items():
        handled = {t["event_name"] for t in cloudtrail if t["source"] == source}
        assert pattern_event_names(r[rule]) == handled, rule


def test_every_other_event_the_guard_handles_is_routed(template, triggers):
    patterns = rules(template).values()
    for t in triggers:
        if t["event_name"] is not None:
            continue
        if t["detail_type"] == "Scheduled Event":
            assert any("ScheduleExpression" in r for r in all_rules(template).values())
        else:
            assert any(t["source"] in p["source"] and t["detail_type"] in p["detail-type"] for p in patterns), t


def test_the_forwarder_forwards_exactly_the_guards_iam_events(template):
    forwarder = load(FORWARDER)
    rule = forwarder["Resources"]["IamEventsForwarder"]["Properties"]
    assert rule["EventPattern"] == rules(template)["IamEvents"]
    [target] = rule["Targets"]
    bus = sub("arn:${AWS::Partition}:events:${ConnectRegion}:${AWS::AccountId}:event-bus/default")
    assert target["Arn"] == bus
    role = forwarder["Resources"]["ForwarderRole"]["Properties"]
    [policy] = role["Policies"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement == {"Effect": "Allow", "Action": "events:PutEvents", "Resource": bus}
    # Forwarding us-east-1 to itself would loop.
    pattern = re.compile(forwarder["Parameters"]["ConnectRegion"]["AllowedPattern"])
    assert not pattern.fullmatch("us-east-1")
    assert pattern.fullmatch("eu-west-2") and pattern.fullmatch("us-east-2")


def test_the_forwarder_keeps_and_reports_what_it_could_not_forward():
    res = load(FORWARDER)["Resources"]
    [target] = res["IamEventsForwarder"]["Properties"]["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ForwarderDeadLetterQueue", "Arn"]}}
    assert "RetryPolicy" not in target  # not accepted for event bus targets: the default 24 h / 185 applies
    [allow, deny] = res["ForwarderDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["IamEventsForwarder", "Arn"]}}}
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    alarm = res["ForwardingFailedAlarm"]["Properties"]
    watched = [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]
    assert {m["MetricName"] for m in watched} == {"FailedInvocations", "InvocationsSentToDlq",
                                                  "InvocationsFailedToBeSentToDlq"}
    assert all(m["Dimensions"] == [{"Name": "RuleName", "Value": {"Ref": "IamEventsForwarder"}}] for m in watched)
    [total] = [m for m in alarm["Metrics"] if m.get("ReturnData")]
    assert total["Expression"] == "SUM([FILL(failed, 0), FILL(kept, 0), FILL(lost, 0)])"
    assert alarm["AlarmActions"] == [OPS_TOPIC]
    assert "KmsMasterKeyId" not in res["OpsTopic"]["Properties"]


def test_only_the_forwarder_rule_may_assume_the_forwarder_role():
    res = load(FORWARDER)["Resources"]
    [trust] = res["ForwarderRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    rule_name = res["IamEventsForwarder"]["Properties"]["Name"]
    assert rule_name == sub("${AWS::StackName}-iam-events")
    assert trust["Condition"]["StringEquals"] == {
        "aws:SourceAccount": {"Ref": "AWS::AccountId"},
        "aws:SourceArn": sub("arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/${AWS::StackName}-iam-events"),
    }


# ------------------------------------------------------------ completeness
def test_function_shape(template):
    fn = template["Resources"][FUNCTION]
    assert fn["Metadata"] == {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": "connect-slr-guard-lambda"}}
    p = fn["Properties"]
    assert (p["Runtime"], p["Handler"], p["CodeUri"]) == ("provided.al2023", "bootstrap", ".")
    assert p["Architectures"] == [{"Ref": "Architecture"}]
    arch = template["Parameters"]["Architecture"]
    assert arch["Default"] == "arm64" and set(arch["AllowedValues"]) == {"arm64", "x86_64"}
    assert p["LoggingConfig"]["LogFormat"] == "JSON"
    assert p["LoggingConfig"]["LogGroup"] == {"Ref": "GuardLogGroup"}
    assert template["Resources"]["GuardLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    env = p["Environment"]["Variables"]
    assert set(env) == {"ALERT_TOPIC_ARN", "REQUIRED_GRANT_OPERATIONS", "CONNECT_API_RPS", "LEDGER_TABLE", "REMINDER_INTERVAL",
                        "SETTLE_WINDOW", "RECHECK_QUEUE_URL", "WORK_QUEUE_URL", "SECURITY_HUB", "CHAT_TOPIC_ARN",
                        "METRICS"}
    assert template["Parameters"]["RequiredGrantOperations"]["Default"] == "Decrypt,GenerateDataKey"
    assert template["Parameters"]["ConnectApiRps"]["Default"] == "2"


def test_deploys_where_the_concurrency_quota_is_small(template):
    """Lambda refuses reserved concurrency that leaves fewer than 100 unreserved
    executions: nothing reserves any. The work queue's message group keeps one
    pass per account and Region instead."""
    text = TEMPLATE.read_text()
    assert "ReservedConcurrentExecutions" not in text and "ReservedConcurrency" not in text
    assert "ProvisionedConcurrencyConfig" not in text


def test_the_work_queue_serializes_passes_and_dead_letters_failures(template):
    res = template["Resources"]
    queue = res["WorkQueue"]["Properties"]
    assert (queue["FifoQueue"], queue["ContentBasedDeduplication"]) == (True, True)
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["WorkDeadLetterQueue", "Arn"]}, "maxReceiveCount": 5}
    assert res["WorkDeadLetterQueue"]["Properties"]["FifoQueue"] is True  # SQS: a FIFO queue's DLQ is FIFO
    # Lambda refuses an SQS event source whose visibility timeout is shorter than the function's timeout.
    assert queue["VisibilityTimeout"] >= res[FUNCTION]["Properties"]["Timeout"]
    assert res["RecheckQueue"]["Properties"]["VisibilityTimeout"] >= res[FUNCTION]["Properties"]["Timeout"]
    work = res[FUNCTION]["Properties"]["Events"]["Work"]
    assert work["Type"] == "SQS"
    assert work["Properties"] == {"Queue": {"Fn::GetAtt": ["WorkQueue", "Arn"]}, "BatchSize": 1,
                                  "FunctionResponseTypes": ["ReportBatchItemFailures"]}
    env = res[FUNCTION]["Properties"]["Environment"]["Variables"]
    assert env["WORK_QUEUE_URL"] == {"Ref": "WorkQueue"}


RULE_ARNS = [{"Fn::GetAtt": [name, "Arn"]} for name in
             ("IamEvents", "ConnectEvents", "ProfilesEvents", "KmsApiEvents", "KmsKeyEvents", "Sweep")]


@pytest.mark.parametrize("queue", ["WorkQueue", "FailureQueue"])
def test_only_the_guards_rules_may_send_to_its_queues_and_only_over_tls(template, queue):
    [policy] = [r["Properties"] for r in template["Resources"].values()
                if r["Type"] == "AWS::SQS::QueuePolicy" and r["Properties"]["Queues"] == [{"Ref": queue}]]
    allow, deny = policy["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": RULE_ARNS}}
    assert sorted(a["Fn::GetAtt"][0] for a in RULE_ARNS) == sorted(all_rules(template))
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})


OPS_TOPIC = {"Fn::If": ["CreateOpsTopic", {"Ref": "OpsTopic"}, {"Ref": "ExistingOpsTopicArn"}]}


def alarms(template: dict) -> dict[str, dict]:
    return {n: r["Properties"] for n, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_every_alarm_goes_to_the_operations_topic_which_needs_no_guard_key(template):
    res = template["Resources"]
    for name, alarm in alarms(template).items():
        assert alarm["AlarmActions"] == [OPS_TOPIC], name
        assert "OKActions" not in alarm and "InsufficientDataActions" not in alarm, name
    ops = res["OpsTopic"]
    assert ops["Condition"] == "CreateOpsTopic"
    assert "KmsMasterKeyId" not in ops["Properties"]  # see the template: nothing to break, nothing sensitive
    assert template["Outputs"]["OpsTopicArn"]["Value"] == OPS_TOPIC
    sub_ = res["OpsEmailSubscription"]
    assert sub_["Properties"]["Endpoint"] == {"Fn::If": ["HasOwnOpsEmail", {"Ref": "OpsEmail"}, {"Ref": "AlertEmail"}]}


def test_each_alarm_fires_again_for_each_new_failure(template):
    a = alarms(template)
    assert set(a) == {"FunctionErrorsAlarm", "FailureQueueAlarm", "EventsLostAlarm", "WorkDeadLetterAlarm",
                      "RecheckDeadLetterAlarm", "ChecksIncompleteAlarm"}
    del a["ChecksIncompleteAlarm"]  # a state that persists, not a failure event: see its own test
    for alarm in a.values():
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert alarm["TreatMissingData"] == "notBreaching"
    assert (a["FunctionErrorsAlarm"]["MetricName"], a["FunctionErrorsAlarm"]["Statistic"]) == ("Errors", "Sum")
    # EventBridge dead-letters with SendMessage, which NumberOfMessagesSent counts ...
    failure = a["FailureQueueAlarm"]
    assert (failure["MetricName"], failure["Statistic"]) == ("NumberOfMessagesSent", "Sum")
    assert (failure["EvaluationPeriods"], failure["DatapointsToAlarm"]) == (3, 1)
    assert failure["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["FailureQueue", "QueueName"]}}]
    # ... an SQS redrive is not a SendMessage: a rise in the messages waiting.
    for name, queue in (("WorkDeadLetterAlarm", "WorkDeadLetterQueue"), ("RecheckDeadLetterAlarm", "RecheckDeadLetterQueue")):
        [waiting, added] = a[name]["Metrics"]
        stat = waiting["MetricStat"]
        assert stat["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible", name
        assert stat["Metric"]["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
        assert (added["Expression"], added["ReturnData"], waiting["ReturnData"]) == ("DIFF(FILL(waiting, 0))", True, False)
        # An idle queue has no datapoint before its first message: look back far enough to see the rise.
        assert (a[name]["EvaluationPeriods"], a[name]["DatapointsToAlarm"]) == (3, 1), name
    # An event neither delivered nor dead-lettered, for any rule.
    lost = a["EventsLostAlarm"]["Metrics"]
    watched = {m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"] for m in lost if "MetricStat" in m}
    assert watched == set(all_rules(template))
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in lost if "MetricStat" in m} == {"InvocationsFailedToBeSentToDlq"}


# What the function emits (CloudWatch EMF, one document per pass, no
# dimensions): the contract of issue 14. SweepChecksIncomplete comes from
# scheduled sweeps only.
EMF_NAMESPACE = "ConnectSlrGuard"
EMF_METRICS = {
    "FindingsCritical", "FindingsHigh", "FindingsMedium", "FindingsLow", "NewFindings", "ResolvedFindings",
    "MutedFindings", "ChecksIncomplete", "SweepChecksIncomplete", "InstancesChecked", "ConnectCalls",
    "CustomerProfilesCalls", "IamCalls", "KmsCalls", "KinesisCalls", "FirehoseCalls", "SnsCalls", "DynamoDbCalls",
    "SqsCalls", "StsCalls", "SecurityHubCalls", "ThrottledRetries", "AlertsPublished", "PassDuration",
}


def test_the_checks_incomplete_alarm_pages_when_sweeps_cannot_look_two_hours_in_a_row(template):
    alarm = alarms(template)["ChecksIncompleteAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (EMF_NAMESPACE, "SweepChecksIncomplete")
    assert alarm["MetricName"] in EMF_METRICS and "Dimensions" not in alarm
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (
        "Maximum", 3600, 2, 2)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    # One period per sweep at the default schedule, where an hour without a
    # sweep is itself breaching; any other schedule leaves hours empty.
    assert template["Parameters"]["SweepSchedule"]["Default"] == "rate(1 hour)"
    missing = {schedule: effective(template, {"SweepSchedule": schedule, "Metrics": "on"})["Resources"][
        "ChecksIncompleteAlarm"]["Properties"]["TreatMissingData"]
        for schedule in ("rate(1 hour)", "rate(1 day)", "cron(0 * * * ? *)")}
    assert missing == {"rate(1 hour)": "breaching", "rate(1 day)": "missing", "cron(0 * * * ? *)": "missing"}


# What exists only with Metrics on: without the metrics the dashboard would
# be empty and ChecksIncompleteAlarm, missing data every hour, would page.
METRICS_RESOURCES = {"GuardDashboard", "ChecksIncompleteAlarm"}
METRICS_OUTPUTS = {"DashboardName", "DashboardUrl"}


def metrics_problems(template: dict) -> list[str]:
    """The metrics, their dashboard, alarm and outputs exist exactly when Metrics is on."""
    problems = []
    for parameters, on in (({}, False), ({"Metrics": "off"}, False), ({"Metrics": "on"}, True)):
        t = effective(template, parameters)
        env = t["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
        if env.get("METRICS") != {"Ref": "Metrics"}:
            problems.append(f"{parameters or 'defaults'}: METRICS is {env.get('METRICS')}, not the parameter")
        for section, names in (("Resources", METRICS_RESOURCES), ("Outputs", METRICS_OUTPUTS)):
            present = names & set(t[section])
            want = names if on else set()
            if present != want:
                problems.append(f"{parameters or 'defaults'}: {section} {sorted(present)}, expected {sorted(want)}")
    return problems


def test_metrics_are_off_by_default_and_told_to_the_function(template):
    spec = template["Parameters"]["Metrics"]
    # Strings: a bare on/off in YAML would arrive as a boolean.
    assert (spec["Default"], spec["AllowedValues"]) == ("off", ["off", "on"])
    env = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert env["METRICS"] == {"Ref": "Metrics"}
    assert template["Conditions"]["MetricsOn"] == {"Fn::Equals": [{"Ref": "Metrics"}, "on"]}
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    assert sum("Metrics" in g["Parameters"] for g in groups) == 1


def test_the_dashboard_and_the_alarm_on_the_metrics_exist_only_with_metrics_on(template):
    res, outputs = template["Resources"], template["Outputs"]
    assert {res[n]["Condition"] for n in METRICS_RESOURCES} == {"MetricsOn"}
    assert {outputs[n]["Condition"] for n in METRICS_OUTPUTS} == {"MetricsOn"}
    assert metrics_problems(template) == []


def without_condition(template: dict, section: str, name: str) -> dict:
    t = copy.deepcopy(template)
    del t[section][name]["Condition"]
    return t


@pytest.mark.parametrize("section, name", [("Resources", n) for n in sorted(METRICS_RESOURCES)]
                         + [("Outputs", n) for n in sorted(METRICS_OUTPUTS)])
def test_the_dashboard_or_alarm_made_unconditional_fails_the_check(template, section, name):
    assert metrics_problems(without_condition(template, section, name))


def test_metrics_unwired_from_the_function_fails_the_check(template):
    t = copy.deepcopy(template)
    del t["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]["METRICS"]
    assert metrics_problems(t)


def rendered_dashboard(template: dict) -> dict:
    """The dashboard body with each ${...} replaced by <its name>, parsed.
    Each name must be one CloudFormation can substitute."""
    dashboard = template["Resources"]["GuardDashboard"]
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(text, str), "a Fn::Sub without a variable map"
    for name in re.findall(r"\$\{([^}]*)\}", text):
        assert not name.startswith("!"), name
        logical_id, _, attribute = name.partition(".")
        known = name.startswith("AWS::") or logical_id in template["Parameters"] or logical_id in template["Resources"]
        assert known and (not attribute or logical_id in template["Resources"]), name
    return json.loads(re.sub(r"\$\{([^}]*)\}", lambda m: f"<{m.group(1)}>", text))


def widget_metrics(widget: dict) -> list[tuple[str, str, dict, dict]]:
    """(namespace, name, dimensions, options) of each metric a widget charts
    (metric math expressions excepted)."""
    out = []
    for m in widget["properties"]["metrics"]:
        options = m[-1] if isinstance(m[-1], dict) else {}
        fields = m[:-1] if options else m
        if len(fields) < 2:
            continue  # an expression
        namespace, name, *pairs = fields
        out.append((namespace, name, dict(zip(pairs[::2], pairs[1::2])), options))
    return out


def widget(body: dict, metric: str, stat: str | None = None) -> dict:
    """The one widget that charts a metric (with that statistic)."""
    [found] = [w for w in body["widgets"] if any(
        n == metric and (stat is None or o.get("stat", w["properties"].get("stat")) == stat)
        for _, n, _, o in widget_metrics(w))]
    return found


def test_the_dashboard_charts_the_guards_metrics_and_its_function_and_failure_queue(template):
    dashboard = template["Resources"]["GuardDashboard"]
    assert dashboard["Type"] == "AWS::CloudWatch::Dashboard"
    # Dashboards are global to the account: one per stack and Region.
    assert dashboard["Properties"]["DashboardName"] == sub("${AWS::StackName}-${AWS::Region}")
    body = rendered_dashboard(template)
    charted = [m for w in body["widgets"] for m in widget_metrics(w)]
    for w in body["widgets"]:
        assert w["type"] == "metric" and w["properties"]["region"] == "<AWS::Region>", w["properties"]["title"]
    own = {name for namespace, name, dims, _ in charted if namespace == EMF_NAMESPACE}
    assert own <= EMF_METRICS, own - EMF_METRICS
    assert all(dims == {} for namespace, _, dims, _ in charted if namespace == EMF_NAMESPACE)
    assert {"FindingsCritical", "FindingsHigh", "FindingsMedium", "FindingsLow", "ChecksIncomplete",
            "SweepChecksIncomplete", "ConnectCalls", "PassDuration"} <= own

    # Findings open by severity: the hour's largest pass (a sweep sees everything).
    findings = widget(body, "FindingsCritical")
    assert (findings["properties"]["stat"], findings["properties"]["period"]) == ("Maximum", 3600)
    assert {n for _, n, _, _ in widget_metrics(findings)} == {f"Findings{s}" for s in ("Critical", "High", "Medium", "Low")}

    # Connect calls per minute (ConnectCalls summed per 60 s, over pass time)
    # against the default quotas of the three APIs the guard paces.
    connect = widget(body, "ConnectCalls", "Sum")["properties"]
    assert connect["period"] == 60
    rps = template["Parameters"]["ConnectApiRps"]
    apis = set(re.findall(r"\(((?:[A-Za-z]+\|)+[A-Za-z]+)\)", rps["AllowedPattern"])[0].split("|"))
    assert apis == {"ListInstances", "DescribeInstance", "ListInstanceStorageConfigs"}
    [quota] = connect["annotations"]["horizontal"]
    assert quota["value"] == len(apis) * int(rps["Default"]) * 60
    [expression] = [m[0] for m in connect["metrics"] if isinstance(m[0], dict)]
    ids = {o["id"] for _, _, _, o in widget_metrics(widget(body, "ConnectCalls", "Sum"))}
    assert set(re.findall(r"[a-z]\w*", expression["expression"])) == ids == {"calls", "duration"}

    # Pass duration p50 and p99.
    assert widget(body, "PassDuration", "p50") is widget(body, "PassDuration", "p99")

    # The function's errors and the failure queue, by the deployed names.
    assert ("AWS/Lambda", "Errors", {"FunctionName": "<GuardFunction>"}) in [(a, b, c) for a, b, c, _ in charted]
    queue = {(n, tuple(d.items())) for ns, n, d, _ in charted if ns == "AWS/SQS"}
    assert queue == {(n, (("QueueName", "<FailureQueue.QueueName>"),))
                     for n in ("NumberOfMessagesSent", "ApproximateNumberOfMessagesVisible")}

    outputs = template["Outputs"]
    assert outputs["DashboardName"]["Value"] == {"Ref": "GuardDashboard"}
    assert "${GuardDashboard}" in outputs["DashboardUrl"]["Value"]["Fn::Sub"]


def test_topic_is_kms_encrypted_optional_and_exported(template):
    res = template["Resources"]
    assert res["AlertTopic"]["Condition"] == "CreateTopic"
    assert res["AlertTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "AlertKey"}
    assert res["AlertKey"]["Properties"]["EnableKeyRotation"] is True
    # No service principal may use the alert key: the alarms no longer publish to its topic.
    principals = [s["Principal"] for s in res["AlertKey"]["Properties"]["KeyPolicy"]["Statement"]]
    assert all("Service" not in p for p in principals)
    assert res["AlertEmailSubscription"]["Condition"] == "HasEmail"
    assert template["Parameters"]["AlertEmail"]["Default"] == ""
    assert template["Parameters"]["ExistingAlertTopicArn"]["Default"] == ""
    assert template["Outputs"]["AlertTopicArn"]["Value"] == {
        "Fn::If": ["CreateTopic", {"Ref": "AlertTopic"}, {"Ref": "ExistingAlertTopicArn"}]
    }


def test_the_log_group_cannot_collide_with_a_functions_automatic_one(template):
    name = template["Resources"]["GuardLogGroup"]["Properties"]["LogGroupName"]
    assert not name["Fn::Sub"].startswith("/aws/lambda/")


def translated(template: dict) -> dict:
    """What CloudFormation would receive (the SAM transform, offline)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self):
            return {}

    t = copy.deepcopy(template)
    t["Resources"][FUNCTION]["Properties"]["CodeUri"] = "s3://example-bucket/connect-slr-guard.zip"
    return transform(t, {}, NoManagedPolicies())


def test_translated_template_lints_clean(template, monkeypatch):
    from cfnlint.api import lint

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    out = translated(template)
    kinds = sorted(r["Type"] for r in out["Resources"].values())
    assert kinds.count("AWS::Events::Rule") == 6
    assert kinds.count("AWS::Lambda::EventSourceMapping") == 2
    # Only SQS invokes the function: no resource policy, no asynchronous invocation.
    assert "AWS::Lambda::Permission" not in kinds and "AWS::Lambda::EventInvokeConfig" not in kinds
    # The transform added no role and no policy of its own.
    assert kinds.count("AWS::IAM::Role") == 1
    errors = lint(json.dumps(out), regions=["us-east-1", "eu-west-2", "ap-southeast-2"])
    assert [str(e) for e in errors] == []


def test_the_ledger_table_is_on_demand_recoverable_encrypted_and_expires_resolved_items(template):
    table = template["Resources"]["LedgerTable"]
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    env = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert env["LEDGER_TABLE"] == {"Ref": "LedgerTable"}
    assert env["REMINDER_INTERVAL"] == {"Ref": "ReminderInterval"}


def test_rechecks_arrive_as_sqs_events_with_partial_batch_responses_and_a_dead_letter_queue(template):
    events = template["Resources"][FUNCTION]["Properties"]["Events"]
    rechecks = events["Rechecks"]["Properties"]
    assert events["Rechecks"]["Type"] == "SQS"
    assert rechecks["Queue"] == {"Fn::GetAtt": ["RecheckQueue", "Arn"]}
    assert rechecks["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = template["Resources"]["RecheckQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["RecheckDeadLetterQueue", "Arn"]}
    env = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert env["RECHECK_QUEUE_URL"] == {"Ref": "RecheckQueue"}


def test_connect_api_rps_refuses_at_deploy_what_the_function_would_refuse_at_start(template):
    pattern = re.compile(template["Parameters"]["ConnectApiRps"]["AllowedPattern"])
    for ok in ("2", "0.5", "1000", "ListInstanceStorageConfigs=5", "1,DescribeInstance=2"):
        assert pattern.fullmatch(ok), ok
    for bad in ("0", "1001", "ListInstance=3", "2,", "fast"):
        assert not pattern.fullmatch(bad), bad
    assert pattern.fullmatch(template["Parameters"]["ConnectApiRps"]["Default"])
