"""Checks on template.yaml and deploy/iam-forwarder.yaml (run by scripts/lint-template.sh).

- Least privilege: every action the function's role grants is in ALLOWED, on
  the resources ALLOWED names for it; no wildcard actions, no NotAction or
  NotResource, no managed policies. A deliberately widened copy of the
  template (iam:PassRole, kms:*, sns:Publish on "*", ...) must fail the same
  check. The optional outputs' grants (securityhub:BatchImportFindings on the
  default product, sns:Publish on the chat topic) exist only when their
  parameter asks for them: the conditions are evaluated per parameter set.
- Remediation (issue 16): the one write, kms:CreateGrant, exists only with
  Remediation=apply (never off or dry-run, which deploy the same template),
  on this account's keys in this Region, with exactly its conditions (the
  grantee a Connect SLR of this account, the operations within
  RequiredGrantOperations, the operations present). A small evaluator of
  IAM's condition semantics runs sample CreateGrant requests against the
  role; every widened copy (no condition, any grantee, kms:*, any key,
  ForAnyValue, no Null guard, iam:CreateServiceLinkedRole in any mode)
  fails.
- Central mode (issue 15): every organisation parameter is off by default,
  and then the stack is the single-account one (no bus, rule, alarm,
  output, variable or grant of central mode). With MemberRoleName set the
  role may assume a role of exactly that name at no path in any account
  (sample AssumeRole requests run through the condition evaluator), and
  list the organisation's accounts only with MemberAccounts=organization;
  the organisation bus admits the listed accounts or the organisation; its
  rules are the guard's, feed the same queue, are admitted by the queue
  policies and watched by an alarm of their own (at most 10 metrics per
  alarm); the template's Rules refuse incoherent parameters.
- The member stack (deploy/member.yaml): its audit role grants exactly the
  guard's reads (the same statements, this account, any Region) and no
  write, is trusted by the central role only with the external id and/or
  the organisation condition, and exists in one Region; its rules are the
  guard's patterns (every sample routed alike, IAM in us-east-1 only) and
  forward to the central bus with a role that may only put events there,
  and a dead-letter queue that admits only them. Widened copies fail.
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
MEMBER = REPO / "deploy" / "member.yaml"
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
# importing findings into Security Hub through the default product, and
# (Remediation=apply only) creating KMS grants for Connect SLRs under
# REMEDIATE_CONDITION.
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
    # The one write of the remediation, only under CONDITIONED's conditions.
    "kms:CreateGrant": [sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*")],
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
    # Central mode only (CENTRAL_GRANTS): the members' audit role, by name,
    # at no path, in any account; and the organisation's account list, which
    # has no resource-level permissions.
    "sts:AssumeRole": [sub("arn:${AWS::Partition}:iam::*:role/${MemberRoleName}")],
    "organizations:ListAccounts": [ANY],
}
ALLOWED_LOWER = {k.lower(): v for k, v in ALLOWED.items()}
# The topic key's data-key actions are usable only through SNS.
VIA_SNS = {"kms:generatedatakey*", "kms:decrypt"}
# The remediation's kms:CreateGrant: the grantee a Connect SLR of this account
# (the service-linked path, any instance's suffix), the operations within
# RequiredGrantOperations (every one, ForAllValues), and present (Null false:
# ForAllValues alone also holds for a request without the key).
CONNECT_SLRS = sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/connect.amazonaws.com/"
                   "AWSServiceRoleForAmazonConnect_*")
REMEDIATE_CONDITION = {
    "StringLike": {"kms:GranteePrincipal": CONNECT_SLRS},
    "ForAllValues:StringEquals": {"kms:GrantOperations": {
        "Fn::Split": [",", {"Fn::Sub": "${RequiredGrantOperations},GenerateDataKey"}]}},
    "Null": {"kms:GrantOperations": "false"},
}
# action -> the exact Condition every statement granting it must carry.
CONDITIONED = {"kms:creategrant": REMEDIATE_CONDITION}
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


def effective(template: dict, parameters: dict[str, str] | None = None, region: str = "eu-west-2") -> dict:
    """The template as CloudFormation takes it with these parameters (the
    rest at their defaults) in this Region: each Fn::If on the branch its
    condition takes, AWS::NoValue dropped, resources and outputs whose
    Condition is false gone."""
    values = {name: str(spec["Default"]) for name, spec in template["Parameters"].items() if "Default" in spec}
    values.update(parameters or {})
    values["AWS::Region"] = region
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
    return problems + statement_violations(statements, ALLOWED_LOWER)


def statement_violations(statements: list[dict], allowed_lower: dict[str, list]) -> list[str]:
    """Every way the statements grant beyond allowed_lower (lowercased action -> resources)."""
    problems = []
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
            if lowered not in allowed_lower:
                problems.append(f"{sid}: {action} is not an action the function needs")
                continue
            for resource in resources:
                if resource not in allowed_lower[lowered]:
                    problems.append(f"{sid}: {action} on {json.dumps(resource)} (allowed: {allowed_lower[lowered]})")
            if lowered in VIA_SNS:
                via = st.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
                if via != sub("sns.${AWS::Region}.amazonaws.com"):
                    problems.append(f"{sid}: {action} must be limited to kms:ViaService sns.<region>")
            if lowered in CONDITIONED and st.get("Condition") != CONDITIONED[lowered]:
                problems.append(f"{sid}: {action} must carry exactly the conditions {CONDITIONED[lowered]}, "
                                f"not {st.get('Condition')}")
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

OWN_KEYS = sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*")

# Parameters -> what the role may publish to, import into and create grants
# on (None: no grant).
OPTIONAL_GRANTS = [
    ({}, [ALERT_TOPIC], None, None),
    ({"SecurityHub": "on"}, [ALERT_TOPIC], [SECURITY_HUB_DEFAULT_PRODUCT], None),
    ({"ChatTopic": "create"}, [ALERT_TOPIC, CREATED_CHAT_TOPIC], None, None),
    ({"ChatTopic": A_CHAT_TOPIC_ARN}, [ALERT_TOPIC, EXISTING_CHAT_TOPIC], None, None),
    ({"ChatTopic": "create", "SecurityHub": "on"}, [ALERT_TOPIC, CREATED_CHAT_TOPIC], [SECURITY_HUB_DEFAULT_PRODUCT], None),
    ({"Remediation": "off"}, [ALERT_TOPIC], None, None),
    ({"Remediation": "dry-run"}, [ALERT_TOPIC], None, None),
    ({"Remediation": "apply"}, [ALERT_TOPIC], None, [OWN_KEYS]),
    ({"Remediation": "dry-run", "SecurityHub": "on"}, [ALERT_TOPIC], [SECURITY_HUB_DEFAULT_PRODUCT], None),
    ({"Remediation": "apply", "ChatTopic": "create", "SecurityHub": "on"},
     [ALERT_TOPIC, CREATED_CHAT_TOPIC], [SECURITY_HUB_DEFAULT_PRODUCT], [OWN_KEYS]),
    ({"Remediation": "apply", "ExistingAlertTopicArn": "arn:aws:sns:eu-west-2:111122223333:alerts"},
     [{"Ref": "ExistingAlertTopicArn"}], None, [OWN_KEYS]),
]


def granted_resources(template: dict, action: str) -> list | None:
    """The resources the role is granted an action on (None: not granted)."""
    statements, _ = function_statements(template)
    found = [st for st in statements if action.lower() in {a.lower() for a in as_list(st.get("Action", []))}]
    return [r for st in found for r in as_list(st.get("Resource", []))] if found else None


def optional_grant_problems(template: dict) -> list[str]:
    """Each optional output's grant exists exactly when its parameter asks for it."""
    problems = []
    for parameters, publish, findings, grants in OPTIONAL_GRANTS:
        t = effective(template, parameters)
        for action, want in (("sns:Publish", publish), ("securityhub:BatchImportFindings", findings),
                             ("kms:CreateGrant", grants)):
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


@pytest.mark.parametrize("sid", ["PublishChat", "ImportFindings", "RemediateGrants"])
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


# -------------------------------------------------------------- remediation
# Issue 16: REMEDIATION (off, dry-run, apply) and REMEDIATION_MAX_ACTIONS.
# In apply mode the function's one new write is kms:CreateGrant for an
# instance's Connect SLR with exactly RequiredGrantOperations, on a key of
# its own account and Region. It never calls iam:CreateServiceLinkedRole
# (AWS documents no way to relink a recreated SLR to an instance), so no
# mode may grant it.
MODES = ["off", "dry-run", "apply"]
REMEDIATE_SID = "RemediateGrants"
REMEDIATE_STATEMENT = {
    "Sid": REMEDIATE_SID, "Effect": "Allow", "Action": "kms:CreateGrant", "Resource": OWN_KEYS,
    "Condition": REMEDIATE_CONDITION,
}
# The optional outputs on and off, and central mode (CENTRAL): remediation
# must not interact with them.
OPTIONAL_OUTPUTS = {"SecurityHub": "on", "ChatTopic": "create", "Metrics": "on"}
OTHER_OPTIONS = [{}, OPTIONAL_OUTPUTS, {"MemberRoleName": "connect-slr-guard-audit", "MemberAccounts": "444455556666"}]


def test_remediation_is_off_by_default_and_told_to_the_function(template):
    spec = template["Parameters"]["Remediation"]
    # Strings: a bare off in YAML would arrive as a boolean.
    assert (spec["Type"], spec["Default"], spec["AllowedValues"]) == ("String", "off", MODES)
    # The parameter tells the operator what apply adds: one conditioned permission, nothing else.
    assert "kms:CreateGrant" in spec["Description"] and "nothing else" in spec["Description"]
    assert template["Conditions"]["RemediationApplies"] == {"Fn::Equals": [{"Ref": "Remediation"}, "apply"]}
    env = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert env["REMEDIATION"] == {"Ref": "Remediation"}
    assert env["REMEDIATION_MAX_ACTIONS"] == {"Ref": "RemediationMaxActions"}
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    [group] = [g for g in groups if {"Remediation", "RemediationMaxActions"} & set(g["Parameters"])]
    assert group["Parameters"] == ["Remediation", "RemediationMaxActions"]
    assert "kms:CreateGrant" in group["Label"]["default"]


def test_remediation_max_actions_takes_a_whole_number(template):
    """What REMEDIATION_MAX_ACTIONS accepts (0 never acts), so a typo fails the deploy, not every pass."""
    spec = template["Parameters"]["RemediationMaxActions"]
    assert (spec["Type"], spec["Default"]) == ("String", "5")
    pattern = re.compile(spec["AllowedPattern"])
    for ok in ("0", "5", "25", "9999"):
        assert pattern.fullmatch(ok), ok
    for bad in ("", "-1", "1.5", " 5", "5 ", "five", "1e3", "10000"):
        assert not pattern.fullmatch(bad), bad


def test_required_grant_operations_cannot_carry_spaces(template):
    """In apply mode the list, split on ",", is the set kms:GrantOperations must stay
    within: " GenerateDataKey" would match no operation and deny the fix."""
    spec = template["Parameters"]["RequiredGrantOperations"]
    pattern = re.compile(spec["AllowedPattern"])
    for ok in ("Decrypt,GenerateDataKey", "Decrypt", spec["Default"]):
        assert pattern.fullmatch(ok), ok
    for bad in ("Decrypt, GenerateDataKey", "Decrypt ,GenerateDataKey", " Decrypt", "Decrypt,", ",Decrypt",
                "Decrypt,,GenerateDataKey", "", "Decrypt;GenerateDataKey", "kms:Decrypt", "*"):
        assert not pattern.fullmatch(bad), bad
    # The default never lets the SLR grant on.
    assert "CreateGrant" not in spec["Default"].split(",")


# -- IAM's evaluation, for the statements and operators the role uses --------
ACCOUNT, OTHER_ACCOUNT, REGION = "111122223333", "444455556666", "eu-west-2"


def parameter_values(template: dict, parameters: dict[str, str]) -> dict[str, str]:
    values = {name: str(spec["Default"]) for name, spec in template["Parameters"].items() if "Default" in spec}
    values.update(parameters)
    values.update({"AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::Region": REGION})
    return values


def rendered(node: Any, values: dict[str, str]) -> Any:
    """A node with Ref (parameters and pseudo parameters), Fn::Sub and Fn::Split
    evaluated as CloudFormation would. References to resources become
    <LogicalId> placeholders, which match no request below."""
    if isinstance(node, list):
        return [rendered(v, values) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        [(key, argument)] = node.items()
        if key == "Ref":
            return values.get(argument, f"<{argument}>")
        if key == "Fn::GetAtt":
            return f"<{'.'.join(argument)}>"
        if key == "Fn::Sub":
            assert isinstance(argument, str), "a Fn::Sub with a variable map"
            return re.sub(r"\$\{([^}]*)\}", lambda m: values.get(m[1], f"<{m[1]}>"), argument)
        if key == "Fn::Split":
            separator, source = argument
            return rendered(source, values).split(separator)
        assert not key.startswith("Fn::"), f"{key}: not rendered here"
    return {k: rendered(v, values) for k, v in node.items()}


def rendered_statements(template: dict, parameters: dict[str, str]) -> list[dict]:
    """The role's statements as IAM would hold them with these parameters."""
    statements, _ = function_statements(effective(template, parameters))
    return rendered(statements, parameter_values(template, parameters))


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's * (any characters, none included) and ? (one character)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


# The base operators the role uses; an operator not here fails the test (add it).
BASE_OPERATORS = {"StringEquals": lambda wanted, value: wanted == value, "StringLike": wildcard_match}


def condition_holds(condition: dict, context: dict[str, Any]) -> bool:
    """IAM's semantics (IAM User Guide, "Condition operators" and "Single-valued
    vs. multivalued context keys"): every operator and key must hold; a key's
    values in the policy are alternatives. A plain operator fails on a key the
    request lacks; ForAllValues holds on it ("also returns true if there are no
    context keys in the request"); ForAnyValue fails on it; Null "true" wants
    the key absent, "false" present."""
    for operator, keys in condition.items():
        for key, wanted in keys.items():
            wanted = wanted if isinstance(wanted, list) else [wanted]
            present = key in context
            if operator == "Null":
                [flag] = wanted
                holds = present != (str(flag).lower() == "true")
            else:
                qualifier, _, base = operator.rpartition(":")
                match = BASE_OPERATORS[base]
                found = context.get(key)
                if qualifier == "":
                    holds = present and any(match(w, found) for w in wanted)
                elif qualifier == "ForAllValues":
                    holds = all(any(match(w, v) for w in wanted) for v in (found or []))
                elif qualifier == "ForAnyValue":
                    holds = any(any(match(w, v) for w in wanted) for v in (found or []))
                else:
                    raise AssertionError(f"{operator}: not evaluated here")
            if not holds:
                return False
    return True


def allowed(statements: list[dict], action: str, resource: str, context: dict[str, Any]) -> bool:
    """Whether the statements allow a request (an explicit Deny wins)."""
    decision = False
    for st in statements:
        if not any(wildcard_match(a, action, ignore_case=True) for a in as_list(st.get("Action", []))):
            continue
        if not any(wildcard_match(r, resource) for r in as_list(st.get("Resource", []))):
            continue
        if not condition_holds(st.get("Condition", {}), context):
            continue
        if st["Effect"] == "Deny":
            return False
        decision = True
    return decision


SLR = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_AbCdEf123456"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
FIX_OPERATIONS = ["Decrypt", "GenerateDataKey"]  # RequiredGrantOperations' default


def create_grant(grantee: str = SLR, operations: list[str] | None = FIX_OPERATIONS, key: str = KEY):
    """A CreateGrant request: its action, resource and KMS condition keys."""
    context: dict[str, Any] = {"kms:GranteePrincipal": grantee}
    if operations is not None:
        context["kms:GrantOperations"] = operations
    return "kms:CreateGrant", key, context


# What -> (request, allowed with Remediation=apply). Off and dry-run allow none.
REQUESTS = {
    "the guard's fix": (create_grant(), True),
    "the same operations in another order": (create_grant(operations=["GenerateDataKey", "Decrypt"]), True),
    "fewer operations": (create_grant(operations=["Decrypt"]), True),
    "an operation beyond the required set": (create_grant(operations=[*FIX_OPERATIONS, "Encrypt"]), False),
    "CreateGrant for the SLR, so it could grant on": (create_grant(operations=[*FIX_OPERATIONS, "CreateGrant"]), False),
    "no operations at all": (create_grant(operations=None), False),
    "a role with the SLR's name outside the service-linked path": (
        create_grant(grantee=f"arn:aws:iam::{ACCOUNT}:role/AWSServiceRoleForAmazonConnect_AbCdEf123456"), False),
    "another service's SLR": (create_grant(grantee=f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/"
                                                  "elasticloadbalancing.amazonaws.com/AWSServiceRoleForElasticLoadBalancing"),
                              False),
    "a Connect SLR of another account": (create_grant(grantee=SLR.replace(ACCOUNT, OTHER_ACCOUNT)), False),
    "an ordinary role of the account": (create_grant(grantee=f"arn:aws:iam::{ACCOUNT}:role/Admin"), False),
    "the account itself": (create_grant(grantee=f"arn:aws:iam::{ACCOUNT}:root"), False),
    "a key of another account": (create_grant(key=KEY.replace(ACCOUNT, OTHER_ACCOUNT)), False),
    "a key of another Region": (create_grant(key=KEY.replace(REGION, "us-east-1")), False),
    "revoking a grant": (("kms:RevokeGrant", KEY, {}), False),
    "retiring a grant": (("kms:RetireGrant", KEY, {}), False),
    "changing the key policy": (("kms:PutKeyPolicy", KEY, {}), False),
    "decrypting with the key": (("kms:Decrypt", KEY, {}), False),
    "recreating the Connect SLR": (("iam:CreateServiceLinkedRole", SLR, {"iam:AWSServiceName": "connect.amazonaws.com"}),
                                   False),
}


def outcomes(template: dict, parameters: dict[str, str]) -> dict[str, bool]:
    statements = rendered_statements(template, parameters)
    return {what: allowed(statements, *request) for what, (request, _) in REQUESTS.items()}


def expected_outcomes(mode: str) -> dict[str, bool]:
    return {what: mode == "apply" and ok for what, (_, ok) in REQUESTS.items()}


def without_remediation(template: dict) -> tuple[dict, list[dict]]:
    """An effective template without the role's description and its RemediateGrants
    statements, and those statements."""
    t = copy.deepcopy(template)
    role = t["Resources"]["GuardRole"]["Properties"]
    role.pop("Description", None)
    removed = []
    for policy in role["Policies"]:
        statements = policy["PolicyDocument"]["Statement"]
        removed += [s for s in statements if s.get("Sid") == REMEDIATE_SID]
        policy["PolicyDocument"]["Statement"] = [s for s in statements if s.get("Sid") != REMEDIATE_SID]
    return t, removed


def remediation_problems(template: dict) -> list[str]:
    """Off and dry-run deploy exactly the same stack; apply adds the RemediateGrants
    statement (and says so in the role's description), and nothing else; the
    sample requests are allowed exactly as REQUESTS says; and no mode grants
    iam:CreateServiceLinkedRole."""
    problems = []
    for options in OTHER_OPTIONS:
        off = effective(template, {"Remediation": "off", **options})
        for mode in MODES:
            parameters = {"Remediation": mode, **options}
            label = " ".join(f"{k}={v}" for k, v in parameters.items())
            t = effective(template, parameters)
            problems += [f"{label}: {v}" for v in violations(t)]
            if mode != "apply" and t != off:
                problems.append(f"{label}: not the stack Remediation=off deploys")
            if mode == "apply":
                rest, added = without_remediation(t)
                if added != [REMEDIATE_STATEMENT]:
                    problems.append(f"{label}: adds {added}, expected exactly {[REMEDIATE_STATEMENT]}")
                if rest != without_remediation(off)[0]:
                    problems.append(f"{label}: changes more than the role's RemediateGrants statement and description")
            statements, _ = function_statements(t)
            for st in statements:
                for action in as_list(st.get("Action", [])):
                    if isinstance(action, str) and wildcard_match(action, "iam:CreateServiceLinkedRole", ignore_case=True):
                        problems.append(f"{label}: {st.get('Sid', '<no Sid>')} grants {action}")
            got, want = outcomes(template, parameters), expected_outcomes(mode)
            problems += [f"{label}: {what} is {'allowed' if got[what] else 'denied'}"
                         for what in REQUESTS if got[what] != want[what]]
    return problems


def test_the_grant_write_exists_only_with_remediation_apply_and_nothing_else_changes(template):
    assert remediation_problems(template) == []


@pytest.mark.parametrize("mode", MODES)
def test_sample_requests_are_allowed_exactly_as_documented(template, mode):
    assert outcomes(template, {"Remediation": mode}) == expected_outcomes(mode)


@pytest.mark.parametrize("operations", ["Decrypt,GenerateDataKey", "Decrypt", "Decrypt,GenerateDataKey,DescribeKey"])
def test_the_grant_is_conditioned_on_a_connect_slr_of_the_account_and_the_required_operations(template, operations):
    statements = rendered_statements(template, {"Remediation": "apply", "RequiredGrantOperations": operations})
    [statement] = [s for s in statements if s.get("Sid") == REMEDIATE_SID]
    # What storage and stream keys need, whatever is configured.
    required = [*operations.split(","), "GenerateDataKey"]
    assert statement == {
        "Sid": REMEDIATE_SID, "Effect": "Allow", "Action": "kms:CreateGrant",
        "Resource": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/*",
        "Condition": {
            "StringLike": {"kms:GranteePrincipal": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/"
                                                   "connect.amazonaws.com/AWSServiceRoleForAmazonConnect_*"},
            "ForAllValues:StringEquals": {"kms:GrantOperations": required},
            "Null": {"kms:GrantOperations": "false"},
        },
    }
    assert allowed(statements, *create_grant(operations=required))
    assert not allowed(statements, *create_grant(operations=[*required, "Encrypt"]))


def test_the_roles_description_says_when_it_may_create_grants(template):
    descriptions = {mode: effective(template, {"Remediation": mode})["Resources"]["GuardRole"]["Properties"]["Description"]
                    for mode in MODES}
    assert descriptions["off"] == descriptions["dry-run"] and "CreateGrant" not in descriptions["off"]
    assert "kms:CreateGrant" in descriptions["apply"]


def remediate_branch(template: dict) -> tuple[list, int]:
    """The statement list holding the RemediateGrants Fn::If, and its index."""
    for policy in template["Resources"]["GuardRole"]["Properties"]["Policies"]:
        statements = policy["PolicyDocument"]["Statement"]
        for i, st in enumerate(statements):
            if isinstance(st, dict) and set(st) == {"Fn::If"} and st["Fn::If"][1].get("Sid") == REMEDIATE_SID:
                return statements, i
    raise AssertionError(f"no conditional statement {REMEDIATE_SID}")


def with_remediation_statement(template: dict, change) -> dict:
    """A copy whose RemediateGrants statement is change(statement)."""
    t = copy.deepcopy(template)
    statements, i = remediate_branch(t)
    condition, statement, otherwise = statements[i]["Fn::If"]
    statements[i] = {"Fn::If": [condition, change(copy.deepcopy(statement)), otherwise]}
    return t


def setting(path: tuple[str, ...], value: Any):
    def change(statement: dict) -> dict:
        node = statement
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return statement
    return change


def dropping(path: tuple[str, ...]):
    def change(statement: dict) -> dict:
        node = statement
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        return statement
    return change


def renaming_operator(old: str, new: str):
    def change(statement: dict) -> dict:
        statement["Condition"][new] = statement["Condition"].pop(old)
        return statement
    return change


# Widened copies of RemediateGrants -> whether a sample request shows the
# widening (False: the check refuses it on its form alone; kms:* under these
# conditions happens to admit no other action, but is refused all the same).
GRANTEE, OPERATIONS = ("Condition", "StringLike", "kms:GranteePrincipal"), ("Condition", "ForAllValues:StringEquals", "kms:GrantOperations")
REMEDIATION_WIDENINGS = {
    "no condition": (dropping(("Condition",)), True),
    "any grantee": (setting(GRANTEE, "*"), True),
    "any role of the account": (setting(GRANTEE, sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*")), True),
    "a Connect SLR of any account": (setting(GRANTEE, sub(
        "arn:${AWS::Partition}:iam::*:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_*")), True),
    "any role named like the SLR": (setting(GRANTEE, sub(
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*AWSServiceRoleForAmazonConnect_*")), True),
    "kms:*": (setting(("Action",), "kms:*"), False),
    "kms:CreateGrant and kms:RevokeGrant": (setting(("Action",), ["kms:CreateGrant", "kms:RevokeGrant"]), False),
    "any key": (setting(("Resource",), "*"), True),
    "keys of any account": (setting(("Resource",), sub("arn:${AWS::Partition}:kms:${AWS::Region}:*:key/*")), True),
    "ForAnyValue instead of ForAllValues": (renaming_operator("ForAllValues:StringEquals", "ForAnyValue:StringEquals"), True),
    "no Null guard": (dropping(("Condition", "Null")), True),
    "no operations condition": (dropping(("Condition", "ForAllValues:StringEquals")), True),
    "operations beyond the parameter": (setting(OPERATIONS, ["Decrypt", "GenerateDataKey", "CreateGrant"]), True),
}


@pytest.mark.parametrize("name", list(REMEDIATION_WIDENINGS))
def test_a_widened_remediation_grant_fails_the_check(template, name):
    change, shows_in_requests = REMEDIATION_WIDENINGS[name]
    t = with_remediation_statement(template, change)
    assert violations(t), f"widening {name!r} was not caught"
    assert remediation_problems(t), f"widening {name!r} was not caught"
    assert (outcomes(t, {"Remediation": "apply"}) != expected_outcomes("apply")) == shows_in_requests


CREATE_SLR = {"Sid": "RecreateSlr", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole",
              "Resource": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/connect.amazonaws.com/*"),
              "Condition": {"StringEquals": {"iam:AWSServiceName": "connect.amazonaws.com"}}}


@pytest.mark.parametrize("mode", MODES + ["every mode"])
def test_granting_iam_create_service_linked_role_fails_the_check_in_any_mode(template, mode):
    t = copy.deepcopy(template)
    t["Conditions"]["OnlyIn"] = {"Fn::Equals": [{"Ref": "Remediation"}, mode]}
    statement = CREATE_SLR if mode == "every mode" else {"Fn::If": ["OnlyIn", CREATE_SLR, {"Ref": "AWS::NoValue"}]}
    t = widened(t, statement)
    assert any("iam:CreateServiceLinkedRole" in p for p in remediation_problems(t))
    for m in MODES if mode == "every mode" else [mode]:
        assert violations(effective(t, {"Remediation": m})), m
        assert outcomes(t, {"Remediation": m})["recreating the Connect SLR"], m


def test_a_write_added_beside_the_grant_in_apply_mode_fails_the_check(template):
    """Even one the least-privilege table allows (here a ledger write): apply adds RemediateGrants and nothing else."""
    t = copy.deepcopy(template)
    statements, i = remediate_branch(t)
    extra = {"Sid": "Extra", "Effect": "Allow", "Action": "dynamodb:PutItem",
             "Resource": {"Fn::GetAtt": ["LedgerTable", "Arn"]}}
    statements.insert(i, {"Fn::If": ["RemediationApplies", extra, {"Ref": "AWS::NoValue"}]})
    assert violations(effective(t, {"Remediation": "apply"})) == []
    assert remediation_problems(t)


def test_dry_run_made_to_grant_fails_the_check(template):
    t = copy.deepcopy(template)
    t["Conditions"]["RemediationApplies"] = {"Fn::Not": [{"Fn::Equals": [{"Ref": "Remediation"}, "off"]}]}
    assert remediation_problems(t)


# ----------------------------------------------------------- event patterns
EventPattern = pytest.importorskip("moto.events.models").EventPattern


ORGANIZATION_BUS = {"Ref": "OrganizationEventBus"}


def rules(template: dict, bus: Any = None) -> dict[str, dict]:
    """Event-pattern rules on a bus (None: the default bus) -> pattern."""
    return {
        name: res["Properties"]["EventPattern"]
        for name, res in template["Resources"].items()
        if res["Type"] == "AWS::Events::Rule" and "EventPattern" in res["Properties"]
        and res["Properties"].get("EventBusName") == bus
    }


def member_rules(template: dict) -> dict[str, dict]:
    """Central mode: the rules on the organisation bus -> pattern."""
    return rules(template, ORGANIZATION_BUS)


def all_rules(template: dict) -> dict[str, dict]:
    """Every EventBridge rule (patterns and the schedule, every bus) -> its properties."""
    return {n: r["Properties"] for n, r in template["Resources"].items() if r["Type"] == "AWS::Events::Rule"}


def matching(template: dict, event: dict, bus: Any = None) -> list[str]:
    return [name for name, pattern in rules(template, bus).items()
            if EventPattern.load(json.dumps(pattern)).matches_event(event)]


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
    """One path for every pass: events and the sweep alike, one message group per account and Region
    (the organisation bus's rules too: the function moves a member's event into its own group)."""
    for name, rule in all_rules(template).items():
        [target] = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}, name
        assert target["SqsParameters"] == {"MessageGroupId": WORK_GROUP}, name
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["FailureQueue", "Arn"]}}, name
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 185, name
    assert len(all_rules(template)) == 11
    assert len(all_rules(effective(template))) == 6
    assert len(all_rules(effective(template, CENTRAL))) == 11


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
    assert set(env) == SINGLE_ACCOUNT_ENV | CENTRAL_ENV
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
MEMBER_RULE_ARNS = [{"Fn::GetAtt": [f"Member{name}", "Arn"]} for name in
                    ("IamEvents", "ConnectEvents", "ProfilesEvents", "KmsApiEvents", "KmsKeyEvents")]


def queue_policy(template: dict, queue: str) -> dict:
    [policy] = [r["Properties"] for r in template["Resources"].values()
                if r["Type"] == "AWS::SQS::QueuePolicy" and r["Properties"]["Queues"] == [{"Ref": queue}]]
    return policy


@pytest.mark.parametrize("queue", ["WorkQueue", "FailureQueue"])
def test_only_the_guards_rules_may_send_to_its_queues_and_only_over_tls(template, queue):
    allow, deny = queue_policy(template, queue)["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    central = [{"Fn::If": ["CentralMode", arn, {"Ref": "AWS::NoValue"}]} for arn in MEMBER_RULE_ARNS]
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": RULE_ARNS + central}}
    assert sorted(a["Fn::GetAtt"][0] for a in RULE_ARNS + MEMBER_RULE_ARNS) == sorted(all_rules(template))
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    # As deployed: exactly the rules that exist, in either mode.
    for parameters in ({}, CENTRAL):
        t = effective(template, parameters)
        [allow, _] = queue_policy(t, queue)["PolicyDocument"]["Statement"]
        admitted = sorted(a["Fn::GetAtt"][0] for a in allow["Condition"]["ArnEquals"]["aws:SourceArn"])
        assert admitted == sorted(all_rules(t)), parameters


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
                      "RecheckDeadLetterAlarm", "ChecksIncompleteAlarm", "MemberEventsLostAlarm"}
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
    # An event neither delivered nor dead-lettered, for any rule: the
    # default bus's and the schedule in EventsLostAlarm, the organisation
    # bus's in MemberEventsLostAlarm (central mode only).
    def watched(name: str) -> set[str]:
        lost = a[name]["Metrics"]
        assert {m["MetricStat"]["Metric"]["MetricName"] for m in lost if "MetricStat" in m} == {
            "InvocationsFailedToBeSentToDlq"}
        ids = [m["Id"] for m in lost if "MetricStat" in m]
        [total] = [m for m in lost if m.get("ReturnData")]
        assert total["Expression"] == f"SUM([{', '.join(f'FILL({i}, 0)' for i in ids)}])", name
        return [m["MetricStat"]["Metric"]["Dimensions"] for m in lost if "MetricStat" in m]
    # A default-bus rule's metrics carry RuleName, its Ref's value.
    assert watched("EventsLostAlarm") == [[{"Name": "RuleName", "Value": {"Ref": r}}] for r in [*rules(template), "Sweep"]]
    # A custom bus's rule's carry EventBusName and RuleName, and its Ref is "<bus>|<rule>".
    assert watched("MemberEventsLostAlarm") == [
        [{"Name": "EventBusName", "Value": ORGANIZATION_BUS},
         {"Name": "RuleName", "Value": {"Fn::Select": [1, {"Fn::Split": ["|", {"Ref": r}]}]}}]
        for r in member_rules(template)]
    assert template["Resources"]["MemberEventsLostAlarm"]["Condition"] == "CentralMode"


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
    assert kinds.count("AWS::Events::Rule") == 11  # 5 of them central mode's
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


# ------------------------------------------------------------ central mode
# Issue 15. MemberRoleName turns central mode on; every organisation
# parameter defaults to empty, and then the stack is the single-account one.
ORG_ID = "o-a1b2c3d4e5"
MEMBER_IDS = "444455556666,777788889999"
AUDIT_ROLE = "connect-slr-guard-audit"
CENTRAL = {"MemberRoleName": AUDIT_ROLE, "MemberAccounts": MEMBER_IDS}
CENTRAL_ORG = {"MemberRoleName": AUDIT_ROLE, "MemberAccounts": "organization", "OrganizationId": ORG_ID,
               "MemberExternalId": "guard-7f3c9e", "SweepRegions": "eu-west-2,us-east-1"}
CENTRAL_PARAMETERS = ["MemberRoleName", "MemberExternalId", "MemberAccounts", "SweepRegions", "OrganizationId"]
SINGLE_ACCOUNT_ENV = {"ALERT_TOPIC_ARN", "REQUIRED_GRANT_OPERATIONS", "CONNECT_API_RPS", "LEDGER_TABLE",
                      "REMINDER_INTERVAL", "SETTLE_WINDOW", "RECHECK_QUEUE_URL", "WORK_QUEUE_URL", "SECURITY_HUB",
                      "CHAT_TOPIC_ARN", "METRICS", "REMEDIATION", "REMEDIATION_MAX_ACTIONS"}
CENTRAL_ENV = {"MEMBER_ROLE_NAME", "MEMBER_ACCOUNTS", "MEMBER_EXTERNAL_ID", "SWEEP_REGIONS"}
GUARD_EVENT_RULES = ["IamEvents", "ConnectEvents", "ProfilesEvents", "KmsApiEvents", "KmsKeyEvents"]
CENTRAL_RESOURCES = {"OrganizationEventBus", "MemberEventsLostAlarm", *(f"Member{r}" for r in GUARD_EVENT_RULES)}
CENTRAL_OUTPUTS = {"OrganizationEventBusArn", "FunctionRoleArn"}
MEMBER_ROLES = sub("arn:${AWS::Partition}:iam::*:role/${MemberRoleName}")
ASSUME_MEMBER_ROLES = {"Sid": "AssumeMemberRoles", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": MEMBER_ROLES}
LIST_ORGANIZATION = {"Sid": "ListOrganizationAccounts", "Effect": "Allow", "Action": "organizations:ListAccounts",
                     "Resource": ANY}
MEMBER_ACCOUNT, OTHER_MEMBER_ACCOUNT = "444455556666", "777788889999"


def references(node: Any) -> set[str]:
    """Every parameter or resource a fragment names (Ref, Fn::GetAtt, ${...} in Fn::Sub)."""
    if isinstance(node, list):
        return {n for item in node for n in references(item)}
    if not isinstance(node, dict):
        return set()
    found = set()
    for key, value in node.items():
        if key == "Ref":
            found.add(value)
        elif key == "Fn::GetAtt":
            found.add(value[0] if isinstance(value, list) else value.split(".")[0])
        elif key == "Fn::Sub":
            text = value if isinstance(value, str) else value[0]
            found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]*)\}", text)}
            found |= references(value[1:] if isinstance(value, list) else [])
        else:
            found |= references(value)
    return found


def rule_failures(template: dict, parameters: dict[str, str]) -> list[str]:
    """The template's Rules whose RuleCondition holds and an Assert does not:
    what CloudFormation refuses before it creates anything."""
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    values.update(parameters)

    def value(node: Any) -> str:
        if isinstance(node, dict):
            [(key, name)] = node.items()
            assert key == "Ref", f"rule argument {node}: not evaluated here"
            return values[name]
        return str(node)

    def holds(node: dict) -> bool:
        [(key, argument)] = node.items()
        if key == "Fn::Equals":
            left, right = map(value, argument)
            return left == right
        if key == "Fn::Not":
            return not holds(argument[0])
        if key in ("Fn::And", "Fn::Or"):
            results = [holds(a) for a in argument]
            return all(results) if key == "Fn::And" else any(results)
        raise AssertionError(f"rule function {key}: not evaluated here")

    return [name for name, rule in template.get("Rules", {}).items()
            if ("RuleCondition" not in rule or holds(rule["RuleCondition"]))
            and not all(holds(a["Assert"]) for a in rule["Assertions"])]


def test_central_mode_is_off_by_default(template):
    parameters = template["Parameters"]
    for name in CENTRAL_PARAMETERS:
        assert (parameters[name]["Type"], parameters[name]["Default"]) == ("String", ""), name
    assert parameters["MemberExternalId"]["NoEcho"] is True
    assert template["Conditions"]["CentralMode"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "MemberRoleName"}, ""]}]}
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    [group] = [g for g in groups if set(CENTRAL_PARAMETERS) & set(g["Parameters"])]
    assert group["Parameters"] == CENTRAL_PARAMETERS
    assert "deploy/member.yaml" in group["Label"]["default"]
    res, outputs = template["Resources"], template["Outputs"]
    assert {res[n]["Condition"] for n in CENTRAL_RESOURCES} == {"CentralMode"}
    assert {outputs[n]["Condition"] for n in CENTRAL_OUTPUTS} == {"CentralMode"}


def single_account_problems(template: dict) -> list[str]:
    """With the organisation parameters at their defaults, nothing of central
    mode is deployed or named: no resource, output, variable or grant."""
    problems = []
    for options in ({}, OPTIONAL_OUTPUTS, {"Remediation": "apply"}):
        t = effective(template, options)
        label = options or "defaults"
        if present := (CENTRAL_RESOURCES & set(t["Resources"])) | (CENTRAL_OUTPUTS & set(t["Outputs"])):
            problems.append(f"{label}: {sorted(present)} deployed")
        env = t["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
        if set(env) != SINGLE_ACCOUNT_ENV:
            problems.append(f"{label}: environment {sorted(set(env) ^ SINGLE_ACCOUNT_ENV)} differs")
        for action in ("sts:AssumeRole", "organizations:ListAccounts"):
            if granted_resources(t, action) is not None:
                problems.append(f"{label}: {action} granted")
        named = references({k: t[k] for k in ("Resources", "Outputs")}) & (set(CENTRAL_PARAMETERS) | CENTRAL_RESOURCES)
        if named:
            problems.append(f"{label}: names {sorted(named)}")
    return problems


def test_the_default_deployment_is_the_single_account_one(template):
    assert single_account_problems(template) == []
    assert rule_failures(template, {}) == []


@pytest.mark.parametrize("name", sorted(CENTRAL_RESOURCES | CENTRAL_OUTPUTS))
def test_central_mode_made_unconditional_fails_the_check(template, name):
    section = "Outputs" if name in CENTRAL_OUTPUTS else "Resources"
    assert single_account_problems(without_condition(template, section, name))


def test_an_unconditional_member_variable_fails_the_check(template):
    t = copy.deepcopy(template)
    t["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]["SWEEP_REGIONS"] = {"Ref": "SweepRegions"}
    assert single_account_problems(t)


# Parameters -> (what the role may assume, what it may list the organisation on).
CENTRAL_GRANTS = [
    ({}, None, None),
    (CENTRAL, [MEMBER_ROLES], None),
    ({**CENTRAL, "MemberExternalId": "guard-7f3c9e", "SweepRegions": "eu-west-2"}, [MEMBER_ROLES], None),
    ({**CENTRAL, "OrganizationId": ORG_ID}, [MEMBER_ROLES], None),
    (CENTRAL_ORG, [MEMBER_ROLES], [ANY]),
    ({**CENTRAL_ORG, "Remediation": "apply", "SecurityHub": "on"}, [MEMBER_ROLES], [ANY]),
]


def central_grant_problems(template: dict) -> list[str]:
    problems = []
    for parameters, assume, listing in CENTRAL_GRANTS:
        t = effective(template, parameters)
        label = parameters or "defaults"
        problems += [f"{label}: {v}" for v in violations(t)]
        for action, want in (("sts:AssumeRole", assume), ("organizations:ListAccounts", listing)):
            if (got := granted_resources(t, action)) != want:
                problems.append(f"{label}: {action} on {got}, expected {want}")
        statements, _ = function_statements(t)
        for expected, want in ((ASSUME_MEMBER_ROLES, assume), (LIST_ORGANIZATION, listing)):
            found = [s for s in statements if s.get("Sid") == expected["Sid"]]
            if found != ([expected] if want else []):
                problems.append(f"{label}: {expected['Sid']} is {found}")
    return problems


def test_central_mode_grants_only_the_members_audit_role_and_the_organisations_list(template):
    assert central_grant_problems(template) == []


@pytest.mark.parametrize("sid", ["AssumeMemberRoles", "ListOrganizationAccounts"])
def test_a_central_grant_made_unconditional_fails_the_check(template, sid):
    assert central_grant_problems(unconditional(template, sid))


CENTRAL_WIDENINGS = {
    "sts:AssumeRole on any role": {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
    "sts:AssumeRole on any role of any account": {
        "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": sub("arn:${AWS::Partition}:iam::*:role/*")},
    "sts:AssumeRole on the name at any path": {
        "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": sub("arn:${AWS::Partition}:iam::*:role/*${MemberRoleName}")},
    "sts:*": {"Effect": "Allow", "Action": "sts:*", "Resource": MEMBER_ROLES},
    "organizations:List*": {"Effect": "Allow", "Action": "organizations:List*", "Resource": "*"},
    "organizations:DescribeOrganization": {"Effect": "Allow", "Action": "organizations:DescribeOrganization", "Resource": "*"},
}


@pytest.mark.parametrize("name", list(CENTRAL_WIDENINGS))
def test_a_widened_central_grant_fails_the_check(template, name):
    assert violations(widened(template, CENTRAL_WIDENINGS[name])), f"widening {name!r} was not caught"


def member_role(account: str, name: str = AUDIT_ROLE) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


# What -> (request, allowed in central mode). Single-account mode allows none.
CENTRAL_REQUESTS = {
    "a member's audit role": (("sts:AssumeRole", member_role(MEMBER_ACCOUNT), {}), True),
    "another member's audit role": (("sts:AssumeRole", member_role(OTHER_MEMBER_ACCOUNT), {}), True),
    "another role of a member": (("sts:AssumeRole", member_role(MEMBER_ACCOUNT, "OrganizationAccountAccessRole"), {}), False),
    "a role of the name at a path": (("sts:AssumeRole", member_role(MEMBER_ACCOUNT, f"team/{AUDIT_ROLE}"), {}), False),
    "a role whose name starts with it": (("sts:AssumeRole", member_role(MEMBER_ACCOUNT, f"{AUDIT_ROLE}-admin"), {}), False),
    "a role whose name ends with it": (("sts:AssumeRole", member_role(MEMBER_ACCOUNT, f"x-{AUDIT_ROLE}"), {}), False),
    "passing a role": (("iam:PassRole", member_role(MEMBER_ACCOUNT), {}), False),
    "a member's account list": (("organizations:ListAccountsForParent", "*", {}), False),
}


def central_outcomes(template: dict, parameters: dict[str, str]) -> dict[str, bool]:
    statements = rendered_statements(template, parameters)
    return {what: allowed(statements, *request) for what, (request, _) in CENTRAL_REQUESTS.items()} | {
        "listing the organisation's accounts": allowed(statements, "organizations:ListAccounts", "*", {})}


@pytest.mark.parametrize("parameters", [{}, CENTRAL, CENTRAL_ORG], ids=["single-account", "account ids", "organization"])
def test_sample_assume_role_requests_are_allowed_exactly_as_documented(template, parameters):
    central = bool(parameters)
    want = {what: central and ok for what, (_, ok) in CENTRAL_REQUESTS.items()} | {
        "listing the organisation's accounts": parameters.get("MemberAccounts") == "organization"}
    assert central_outcomes(template, parameters) == want


def test_member_role_name_cannot_widen_the_role_it_may_assume(template):
    """The name is substituted into arn:...:iam::*:role/<name>: a wildcard or a
    path would reach other roles."""
    pattern = re.compile(template["Parameters"]["MemberRoleName"]["AllowedPattern"])
    for ok in ("", AUDIT_ROLE, "a", "x" * 48, "Guard+=,.@_-Audit"):
        assert pattern.fullmatch(ok), ok
    for bad in ("*", "audit*", "audit?", "team/audit", "/audit", "x" * 49, "audit role",
                "arn:aws:iam::111122223333:role/audit", "audit\n"):
        assert not pattern.fullmatch(bad), bad


def test_member_accounts_take_ids_or_organization(template):
    spec = template["Parameters"]["MemberAccounts"]
    pattern = re.compile(spec["AllowedPattern"])
    most = ",".join(f"{i:012d}" for i in range(1, 201))
    assert len(most) <= spec["MaxLength"] < len(most + ",000000000201")
    for ok in ("", "organization", "111122223333", MEMBER_IDS, most):
        assert pattern.fullmatch(ok), ok
    for bad in ("111122223333, 444455556666", "11112222333", "1111222233334", "Organization", "organization,111122223333",
                "111122223333,", ",111122223333", "*", "all"):
        assert not pattern.fullmatch(bad), bad


def test_sweep_regions_organization_id_and_external_id_refuse_what_the_function_would(template):
    parameters = template["Parameters"]
    checks = {
        "SweepRegions": (["", "eu-west-2", "eu-west-2,us-east-1", "us-gov-west-1", "ap-southeast-2,il-central-1"],
                         ["eu-west-2, us-east-1", "EU-WEST-2", "eu-west", "*", "eu-west-2,", "all"]),
        "OrganizationId": (["", ORG_ID, "o-" + "a" * 32], ["o-", "o-ABCDEFGHIJ", "r-a1b2c3d4e5", "a1b2c3d4e5", "o-abc"]),
        "MemberExternalId": (["", "ab", "guard-7f3c9e", "x" * 1224, "a+=,.@:/_-b"], ["a", "x" * 1225, "with space", "é1"]),
    }
    for name, (good, bad) in checks.items():
        pattern = re.compile(parameters[name]["AllowedPattern"])
        for ok in good:
            assert pattern.fullmatch(ok), (name, ok)
        for no in bad:
            assert not pattern.fullmatch(no), (name, no)


@pytest.mark.parametrize("parameters, refused", [
    ({}, []),
    (CENTRAL, []),
    (CENTRAL_ORG, []),
    ({**CENTRAL, "OrganizationId": ORG_ID}, []),
    ({"MemberRoleName": AUDIT_ROLE}, ["CentralModeNeedsMemberAccounts"]),
    ({"MemberAccounts": MEMBER_IDS}, ["OrganisationSettingsNeedCentralMode"]),
    ({"SweepRegions": "eu-west-2,us-east-1"}, ["OrganisationSettingsNeedCentralMode"]),
    ({"MemberExternalId": "guard-7f3c9e"}, ["OrganisationSettingsNeedCentralMode"]),
    ({"OrganizationId": ORG_ID}, ["OrganisationSettingsNeedCentralMode"]),
    ({"MemberRoleName": AUDIT_ROLE, "MemberAccounts": "organization"}, ["OrganizationListingNeedsOrganizationId"]),
])
def test_the_template_refuses_incoherent_organisation_parameters(template, parameters, refused):
    assert rule_failures(template, parameters) == refused


@pytest.mark.parametrize("parameters, want", [
    ({}, {}),
    (CENTRAL, {"MEMBER_ROLE_NAME": "MemberRoleName", "MEMBER_ACCOUNTS": "MemberAccounts"}),
    (CENTRAL_ORG, {"MEMBER_ROLE_NAME": "MemberRoleName", "MEMBER_ACCOUNTS": "MemberAccounts",
                   "MEMBER_EXTERNAL_ID": "MemberExternalId", "SWEEP_REGIONS": "SweepRegions"}),
], ids=["single-account", "account ids", "organization"])
def test_the_function_is_told_central_mode(template, parameters, want):
    env = effective(template, parameters)["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert {k: v for k, v in env.items() if k in CENTRAL_ENV} == {k: {"Ref": p} for k, p in want.items()}
    assert set(env) - CENTRAL_ENV == SINGLE_ACCOUNT_ENV


def bus_policy(template: dict, parameters: dict[str, str]) -> list[dict]:
    t = effective(template, parameters)
    return t["Resources"]["OrganizationEventBus"]["Properties"]["Policy"]["Statement"]


BUS_ARN = sub("arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${AWS::StackName}-members")


def test_the_organisation_bus_admits_the_listed_accounts_or_the_organisation_only(template):
    bus = template["Resources"]["OrganizationEventBus"]["Properties"]
    # The statement's Resource is the bus itself (its name, as the policy cannot GetAtt its own bus).
    assert bus["Name"] == sub("${AWS::StackName}-members")
    accounts = {"Sid": "MembersPutEvents", "Effect": "Allow", "Action": "events:PutEvents", "Resource": BUS_ARN,
                "Principal": {"AWS": {"Fn::Split": [",", {"Ref": "MemberAccounts"}]}}}
    assert bus_policy(template, CENTRAL) == [accounts]
    assert rendered(accounts["Principal"], parameter_values(template, CENTRAL)) == {"AWS": [MEMBER_ACCOUNT, OTHER_MEMBER_ACCOUNT]}
    organisation = {"Sid": "MembersPutEvents", "Effect": "Allow", "Action": "events:PutEvents", "Resource": BUS_ARN,
                    "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}}
    assert bus_policy(template, CENTRAL_ORG) == [organisation]
    assert bus_policy(template, {**CENTRAL, "OrganizationId": ORG_ID}) == [organisation]


def test_the_organisation_bus_carries_the_guards_rules_into_the_same_queue(template):
    res = template["Resources"]
    for name in GUARD_EVENT_RULES:
        guard, member = res[name], res[f"Member{name}"]
        assert member["Condition"] == "CentralMode", name
        assert member["Properties"]["EventBusName"] == ORGANIZATION_BUS, name
        assert member["Properties"]["EventPattern"] == guard["Properties"]["EventPattern"], name
        assert member["Properties"]["Targets"] == guard["Properties"]["Targets"], name
    assert set(member_rules(template)) == {f"Member{n}" for n in GUARD_EVENT_RULES}
    assert set(rules(template)) == set(GUARD_EVENT_RULES)


@pytest.mark.parametrize("filename", SAMPLES)
def test_each_sample_from_a_member_is_routed_by_exactly_its_rule_on_the_organisation_bus(template, filename):
    want = expected_rule(filename)
    assert matching(template, sample(filename), ORGANIZATION_BUS) == ([f"Member{want}"] if want else [])


def test_the_central_outputs_are_what_member_stacks_need(template):
    outputs = effective(template, CENTRAL)["Outputs"]
    assert outputs["OrganizationEventBusArn"]["Value"] == {"Fn::GetAtt": ["OrganizationEventBus", "Arn"]}
    assert outputs["FunctionRoleArn"]["Value"] == {"Fn::GetAtt": ["GuardRole", "Arn"]}
    assert template["Resources"][FUNCTION]["Properties"]["Role"] == {"Fn::GetAtt": ["GuardRole", "Arn"]}
    for key, parameter in (("OrganizationEventBusArn", "CentralEventBusArn"), ("FunctionRoleArn", "CentralRoleArn")):
        assert parameter in outputs[key]["Description"], key


METRIC_MATH_ALARM_METRICS = 10  # CloudWatch: a hard limit on the metrics one metric math alarm watches


@pytest.mark.parametrize("path", [TEMPLATE, FORWARDER, MEMBER], ids=lambda p: p.name)
def test_no_alarm_watches_more_metrics_than_cloudwatch_allows(path):
    for name, alarm in alarms(load(path)).items():
        stats = [m for m in alarm.get("Metrics", []) if "MetricStat" in m]
        assert len(stats) <= METRIC_MATH_ALARM_METRICS, name


# ------------------------------------------------------------ member stack
# deploy/member.yaml, one stack per member account and Region (a StackSet's).
@pytest.fixture(scope="module")
def member() -> dict:
    return load(MEMBER)


# Actions only the central stack grants: the remediation's write, and central
# mode's own (assuming the members' roles, listing the organisation).
CENTRAL_ONLY = {"kms:creategrant", "sts:assumerole", "organizations:listaccounts"}
MEMBER_OK = {"ExternalId": "guard-7f3c9e"}  # a member stack's parameters: the trust needs a condition


def any_region(node: Any) -> Any:
    """A resource of this account in any Region: ${AWS::Region} becomes *."""
    if isinstance(node, list):
        return [any_region(v) for v in node]
    if isinstance(node, dict):
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            return sub(node["Fn::Sub"].replace("${AWS::Region}", "*"))
        return {k: any_region(v) for k, v in node.items()}
    return node


def guard_reads(template: dict) -> list[dict]:
    """template.yaml's read-connect-dependencies statements, less the conditional ones (the central stack's own)."""
    [policy] = [p for p in template["Resources"]["GuardRole"]["Properties"]["Policies"]
                if p["PolicyName"] == "read-connect-dependencies"]
    statements = policy["PolicyDocument"]["Statement"]
    conditional = [s for s in statements if set(s) == {"Fn::If"}]
    assert {a.lower() for s in conditional for a in as_list(s["Fn::If"][1]["Action"])} == CENTRAL_ONLY
    return [s for s in statements if set(s) != {"Fn::If"}]


@pytest.fixture(scope="module")
def member_allowed(template) -> dict[str, list]:
    """What the audit role may do: the guard's read actions, on its resources in any Region."""
    reads = {a.lower() for s in guard_reads(template) for a in as_list(s["Action"])}
    return {a: any_region(r) for a, r in ALLOWED_LOWER.items() if a in reads}


def audit_role_statements(member: dict, region: str = "us-east-1") -> tuple[list[dict], list[str]]:
    t = effective(member, MEMBER_OK, region)
    problems = []
    roles = {n: r for n, r in t["Resources"].items() if r["Type"] == "AWS::IAM::Role"
             and r["Properties"].get("RoleName") == {"Ref": "MemberRoleName"}}
    if list(roles) != ["AuditRole"]:
        problems.append(f"audit roles: {sorted(roles)}")
        return [], problems
    props = roles["AuditRole"]["Properties"]
    if as_list(props.get("ManagedPolicyArns", [])):
        problems.append("AuditRole has ManagedPolicyArns: managed policies cannot be checked, inline only")
    if len(as_list(props.get("Policies", []))) != 1:
        problems.append("AuditRole: one inline policy, read-connect-dependencies")
    for name, res in t["Resources"].items():
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::RolePolicy", "AWS::IAM::ManagedPolicy") and {"Ref": "AuditRole"} in (
                as_list(res["Properties"].get("Roles", [])) + as_list(res["Properties"].get("RoleName", []))):
            problems.append(f"{name} attaches more to AuditRole")
    statements = [s for p in as_list(props.get("Policies", [])) for s in as_list(p["PolicyDocument"]["Statement"])]
    return statements, problems


def member_violations(member: dict, allowed_lower: dict[str, list]) -> list[str]:
    statements, problems = audit_role_statements(member)
    return problems + statement_violations(statements, allowed_lower)


def test_the_audit_role_is_least_privilege(member, member_allowed):
    assert member_violations(member, member_allowed) == []


def test_the_audit_role_grants_exactly_the_guards_reads_in_any_region_of_its_account(member, template, member_allowed):
    statements, _ = audit_role_statements(member)
    assert statements == any_region(guard_reads(template))
    granted = {a.lower() for s in statements for a in as_list(s["Action"])}
    assert granted == set(member_allowed)
    assert not granted & CENTRAL_ONLY


def test_the_audit_role_cannot_write(member):
    statements, _ = audit_role_statements(member)
    for s in statements:
        assert s["Effect"] == "Allow" and "Condition" not in s, s.get("Sid")
        for action in as_list(s["Action"]):
            service, verb = action.split(":")
            assert verb.startswith(("Get", "List", "Describe")) and "*" not in verb, action


MEMBER_WIDENINGS = {
    "kms:CreateGrant (the remediation's write)": {"Effect": "Allow", "Action": "kms:CreateGrant",
                                                  "Resource": sub("arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/*")},
    "sts:AssumeRole": {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
    "iam:PassRole": {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"},
    "connect:*": {"Effect": "Allow", "Action": "connect:*", "Resource": "*"},
    "instances of any account": {"Effect": "Allow", "Action": "connect:DescribeInstance",
                                 "Resource": sub("arn:${AWS::Partition}:connect:*:*:instance/*")},
    "key policies of any account": {"Effect": "Allow", "Action": "kms:GetKeyPolicy",
                                    "Resource": sub("arn:${AWS::Partition}:kms:*:*:key/*")},
    "iam:GetRole on every role": {"Effect": "Allow", "Action": "iam:GetRole", "Resource": "*"},
    "sns:Publish (the central stack's)": {"Effect": "Allow", "Action": "sns:Publish", "Resource": "*"},
    "NotAction": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
}


def with_audit_statement(member: dict, statement: dict) -> dict:
    t = copy.deepcopy(member)
    t["Resources"]["AuditRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(statement)
    return t


@pytest.mark.parametrize("name", list(MEMBER_WIDENINGS))
def test_a_widened_audit_role_fails_the_check(member, member_allowed, name):
    assert member_violations(with_audit_statement(member, MEMBER_WIDENINGS[name]), member_allowed), name


def test_a_managed_policy_or_a_second_policy_on_the_audit_role_fails_the_check(member, member_allowed):
    t = copy.deepcopy(member)
    t["Resources"]["AuditRole"]["Properties"]["ManagedPolicyArns"] = ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    assert member_violations(t, member_allowed)
    t = copy.deepcopy(member)
    t["Resources"]["Extra"] = {"Type": "AWS::IAM::Policy", "Properties": {
        "PolicyName": "extra", "Roles": [{"Ref": "AuditRole"}],
        "PolicyDocument": {"Version": "2012-10-17", "Statement": []}}}
    assert member_violations(t, member_allowed)


def test_a_widened_copy_of_the_member_file_fails(member_allowed):
    text = MEMBER.read_text()
    anchor = "Resource: !Sub arn:${AWS::Partition}:connect:*:${AWS::AccountId}:instance/*\n"
    assert text.count(anchor) == 1
    bad = text.replace(anchor, "Resource: !Sub arn:${AWS::Partition}:connect:*:*:instance/*\n")
    assert member_violations(load_str(text), member_allowed) == []
    assert member_violations(load_str(bad), member_allowed)


CENTRAL_ROLE = {"AWS": {"Ref": "CentralRoleArn"}}
EXTERNAL_ID = {"sts:ExternalId": {"Ref": "ExternalId"}}
IN_ORGANIZATION = {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}
# Parameters -> the audit role's one trust condition.
TRUSTS = [
    ({"ExternalId": "guard-7f3c9e"}, {"StringEquals": EXTERNAL_ID}),
    ({"OrganizationId": ORG_ID}, {"StringEquals": IN_ORGANIZATION}),
    ({"ExternalId": "guard-7f3c9e", "OrganizationId": ORG_ID}, {"StringEquals": {**EXTERNAL_ID, **IN_ORGANIZATION}}),
]


def trust_problems(member: dict) -> list[str]:
    """The audit role trusts the central role only, for sts:AssumeRole only,
    with the external id and/or the organisation condition as given; and the
    template refuses a trust with neither."""
    problems = []
    for parameters, condition in TRUSTS:
        t = effective(member, parameters, "us-east-1")
        trust = t["Resources"]["AuditRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        want = [{"Effect": "Allow", "Principal": CENTRAL_ROLE, "Action": "sts:AssumeRole", "Condition": condition}]
        if trust != want:
            problems.append(f"{parameters}: trust {trust}")
    if "TrustNeedsExternalIdOrOrganization" not in rule_failures(member, {}):
        problems.append("a trust without external id or organisation is accepted")
    return problems


def test_the_audit_role_trusts_the_central_role_only_with_its_conditions(member):
    assert trust_problems(member) == []
    assert rule_failures(member, MEMBER_OK) == rule_failures(member, {"OrganizationId": ORG_ID}) == []


def test_the_trust_conditions_hold_for_the_guard_and_for_no_one_else(member):
    """IAM's evaluation of the rendered condition (the principal is compared above)."""
    values = {"ExternalId": "guard-7f3c9e", "OrganizationId": ORG_ID}
    t = effective(member, values, "us-east-1")
    [trust] = rendered(t["Resources"]["AuditRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"],
                       parameter_values(member, values))
    guard = {"sts:ExternalId": "guard-7f3c9e", "aws:PrincipalOrgID": ORG_ID}
    assert condition_holds(trust["Condition"], guard)
    for what, context in {"no external id": {"aws:PrincipalOrgID": ORG_ID},
                          "another external id": {**guard, "sts:ExternalId": "guess"},
                          "another organisation": {**guard, "aws:PrincipalOrgID": "o-zzzzzzzzzz"},
                          "outside any organisation": {"sts:ExternalId": "guard-7f3c9e"}}.items():
        assert not condition_holds(trust["Condition"], context), what


def with_trust(member: dict, change) -> dict:
    t = copy.deepcopy(member)
    [statement] = t["Resources"]["AuditRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    change(statement)
    return t


TRUST_WIDENINGS = {
    "anyone": lambda s: s.update(Principal={"AWS": "*"}),
    "the central account": lambda s: s.update(Principal={"AWS": sub("arn:${AWS::Partition}:iam::111122223333:root")}),
    "no condition": lambda s: s.pop("Condition"),
    "sts:*": lambda s: s.update(Action="sts:*"),
    "a second principal": lambda s: s.update(Principal={"AWS": [{"Ref": "CentralRoleArn"}, "arn:aws:iam::999988887777:root"]}),
}


@pytest.mark.parametrize("name", list(TRUST_WIDENINGS))
def test_a_widened_trust_fails_the_check(member, name):
    assert trust_problems(with_trust(member, TRUST_WIDENINGS[name]))


def test_the_member_parameters_match_the_central_ones(member, template):
    """The same names, ids and patterns on both sides (the central stack's may be empty)."""
    mine, central = member["Parameters"], template["Parameters"]
    assert "^$|" + mine["MemberRoleName"]["AllowedPattern"] == central["MemberRoleName"]["AllowedPattern"]
    assert re.fullmatch(central["MemberRoleName"]["AllowedPattern"], mine["MemberRoleName"]["Default"])
    assert mine["MemberRoleName"]["Default"] == AUDIT_ROLE
    assert mine["ExternalId"]["AllowedPattern"] == central["MemberExternalId"]["AllowedPattern"]
    assert mine["ExternalId"]["NoEcho"] is True
    assert mine["OrganizationId"]["AllowedPattern"] == central["OrganizationId"]["AllowedPattern"]
    # What the central outputs give it fits.
    assert re.fullmatch(mine["CentralRoleArn"]["AllowedPattern"], "arn:aws:iam::111122223333:role/connect-slr-guard-GuardRole-AbC123")
    assert re.fullmatch(mine["CentralEventBusArn"]["AllowedPattern"],
                        "arn:aws:events:eu-west-2:111122223333:event-bus/connect-slr-guard-members")


def test_the_member_stack_is_stackset_ready(member):
    """Service-managed StackSets with automatic deployment: no transform, no
    nested stack or macro, and every parameter but the central stack's two
    outputs has a default."""
    text = MEMBER.read_text()
    assert "Transform" not in member and "Fn::Transform" not in text and "AWS::Include" not in text
    kinds = {r["Type"] for r in member["Resources"].values()}
    assert not {k for k in kinds if k.startswith(("AWS::Serverless::", "AWS::CloudFormation::"))}
    required = {n for n, spec in member["Parameters"].items() if "Default" not in spec}
    assert required == {"CentralRoleArn", "CentralEventBusArn"}


@pytest.mark.parametrize("region, role_region, has_role", [
    ("us-east-1", None, True), ("eu-west-2", None, False), ("ap-southeast-2", None, False),
    ("eu-west-2", "eu-west-2", True), ("us-east-1", "eu-west-2", False)])
def test_the_audit_role_is_made_once_per_account(member, region, role_region, has_role):
    """IAM is global: one stack per account and Region, one role per account."""
    parameters = {**MEMBER_OK, **({"AuditRoleRegion": role_region} if role_region else {})}
    t = effective(member, parameters, region)
    assert ("AuditRole" in t["Resources"]) == ("AuditRoleArn" in t["Outputs"]) == has_role
    # Every other IAM resource is unnamed (one per stack, no clash between Regions).
    for name, res in t["Resources"].items():
        if res["Type"].startswith("AWS::IAM::") and name != "AuditRole":
            assert "RoleName" not in res["Properties"], name


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-2"])
def test_the_member_rules_are_the_guards_and_iam_only_in_us_east_1(member, template, region):
    t = effective(member, MEMBER_OK, region)
    forwarding = rules(t)
    want = set(GUARD_EVENT_RULES) - (set() if region == "us-east-1" else {"IamEvents"})
    assert set(forwarding) == want
    assert all_rules(t).keys() == forwarding.keys()  # no schedule: the central guard sweeps
    for name, pattern in forwarding.items():
        assert pattern == rules(template)[name], name


@pytest.mark.parametrize("filename", SAMPLES)
def test_each_sample_is_forwarded_by_a_member_as_the_guard_routes_it(member, template, filename):
    event = sample(filename)
    guard = matching(template, event)
    assert matching(effective(member, MEMBER_OK, "us-east-1"), event) == guard
    assert matching(effective(member, MEMBER_OK, "eu-west-2"), event) == [r for r in guard if r != "IamEvents"]


MEMBER_RULE_SUFFIX = {"IamEvents": "iam-events", "ConnectEvents": "connect-events", "ProfilesEvents": "profiles-events",
                      "KmsApiEvents": "kms-api-events", "KmsKeyEvents": "kms-key-events"}
CENTRAL_TARGET = {"Id": "central-bus", "Arn": {"Ref": "CentralEventBusArn"},
                  "RoleArn": {"Fn::GetAtt": ["ForwarderRole", "Arn"]},
                  "DeadLetterConfig": {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}}


def forwarding_problems(member: dict) -> list[str]:
    """Every rule targets the central bus only, with the forwarder role and the
    dead-letter queue; the role may be assumed by these rules only and may only
    put events on that bus; the queue admits these rules only, over TLS."""
    problems = []
    for region in ("us-east-1", "eu-west-2"):
        t = effective(member, MEMBER_OK, region)
        res = t["Resources"]
        names = {}
        for name, rule in all_rules(t).items():
            if rule["Targets"] != [CENTRAL_TARGET]:
                problems.append(f"{region} {name}: targets {rule['Targets']}")
            names[name] = rule.get("Name")
            if names[name] != sub(f"${{MemberRoleName}}-{MEMBER_RULE_SUFFIX.get(name)}"):
                problems.append(f"{region} {name}: named {names[name]}")
        role = res["ForwarderRole"]["Properties"]
        [trust] = role["AssumeRolePolicyDocument"]["Statement"]
        arns = [sub("arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/" + n["Fn::Sub"])
                for n in names.values() if n]
        want_trust = {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole",
                      "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"},
                                                     "aws:SourceArn": arns}}}
        if trust != want_trust:
            problems.append(f"{region}: ForwarderRole trust {trust}")
        statements = [s for p in role["Policies"] for s in as_list(p["PolicyDocument"]["Statement"])]
        if statements != [{"Effect": "Allow", "Action": "events:PutEvents", "Resource": {"Ref": "CentralEventBusArn"}}]:
            problems.append(f"{region}: ForwarderRole may {statements}")
        if as_list(role.get("ManagedPolicyArns", [])):
            problems.append(f"{region}: ForwarderRole has managed policies")
        allow, deny = res["DeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
        admitted = allow["Condition"]["ArnEquals"]["aws:SourceArn"]
        if (allow["Principal"], allow["Action"], allow["Resource"]) != (
                {"Service": "events.amazonaws.com"}, "sqs:SendMessage", {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}):
            problems.append(f"{region}: dead-letter queue admits {allow}")
        if sorted(a["Fn::GetAtt"][0] for a in admitted) != sorted(names):
            problems.append(f"{region}: dead-letter queue admits {admitted}")
        if (deny["Effect"], deny["Condition"]) != ("Deny", {"Bool": {"aws:SecureTransport": "false"}}):
            problems.append(f"{region}: dead-letter queue without TLS-only")
    return problems


def test_the_member_forwards_to_the_central_bus_only_and_keeps_what_it_cannot(member):
    assert forwarding_problems(member) == []
    queue = member["Resources"]["DeadLetterQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True and "FifoQueue" not in queue  # a rule's DLQ must be standard
    assert queue["MessageRetentionPeriod"] == 1209600
    # An event bus target takes no RetryPolicy: EventBridge's default 24 h / 185 attempts apply.
    assert all("RetryPolicy" not in t for r in all_rules(member).values() for t in r["Targets"])


def test_member_rule_names_fit_eventbridge_for_the_longest_role_name(member):
    longest = "x" * 48
    assert re.fullmatch(member["Parameters"]["MemberRoleName"]["AllowedPattern"], longest)
    for suffix in MEMBER_RULE_SUFFIX.values():
        assert len(f"{longest}-{suffix}") <= 64, suffix


FORWARDING_WIDENINGS = {
    "PutEvents on any bus": lambda m: m["Resources"]["ForwarderRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"][0].update(Resource="*"),
    "events:*": lambda m: m["Resources"]["ForwarderRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"][0].update(Action="events:*"),
    "any rule may assume it": lambda m: m["Resources"]["ForwarderRole"]["Properties"]["AssumeRolePolicyDocument"][
        "Statement"][0].pop("Condition"),
    "another target": lambda m: m["Resources"]["ConnectEvents"]["Properties"]["Targets"].append(
        {"Id": "x", "Arn": "arn:aws:events:us-east-1:999988887777:event-bus/default"}),
    "a pattern drifted from the guard's": lambda m: m["Resources"]["ConnectEvents"]["Properties"]["EventPattern"][
        "detail"]["eventName"].pop(),
    "no dead-letter queue": lambda m: m["Resources"]["KmsKeyEvents"]["Properties"]["Targets"][0].pop("DeadLetterConfig"),
}


@pytest.mark.parametrize("name", list(FORWARDING_WIDENINGS))
def test_a_widened_forwarding_fails_the_check(member, template, name):
    t = copy.deepcopy(member)
    FORWARDING_WIDENINGS[name](t)
    patterns_differ = any(rules(effective(t, MEMBER_OK, "us-east-1"))[n] != rules(template)[n]
                          for n in GUARD_EVENT_RULES)
    assert forwarding_problems(t) or patterns_differ, name


@pytest.mark.parametrize("parameters, alarm_to", [
    ({}, None),
    ({"OpsEmail": "ops@example.com"}, {"Ref": "OpsTopic"}),
    ({"OpsTopicName": "aws-controltower-SecurityNotifications"},
     sub("arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:${OpsTopicName}")),
])
def test_the_member_alarm_is_opt_in_and_watches_one_metric(member, parameters, alarm_to):
    t = effective(member, {**MEMBER_OK, **parameters}, "eu-west-2")
    found = alarms(t)
    if alarm_to is None:
        assert found == {} and "OpsTopic" not in t["Resources"]
        return
    [alarm] = found.values()
    assert alarm["AlarmActions"] == [alarm_to]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/SQS", "NumberOfMessagesSent", "Sum")
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"], alarm["TreatMissingData"]) == (3, 1, "notBreaching")
    assert ("OpsTopic" in t["Resources"]) == ("OpsEmail" in parameters)
    if "OpsTopic" in t["Resources"]:
        assert "KmsMasterKeyId" not in t["Resources"]["OpsTopic"]["Properties"]
    assert rule_failures(member, {**MEMBER_OK, "OpsEmail": "a@b.c", "OpsTopicName": "t"}) == ["OneOpsTopic"]

