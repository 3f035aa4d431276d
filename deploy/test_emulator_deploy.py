"""Deploy every stack into the emulator (moto, in process: no network, no
Docker, no account) and check what was created (issue 12, item 7; central
mode and the member stack, issue 15).

What is proven, against the emulator's own state rather than the YAML:

- template.yaml, transformed offline by aws-sam-translator exactly as
  `sam deploy` would submit it, creates in moto's CloudFormation
  (eu-west-2, the stack name from samconfig.toml) with the defaults, and
  again with AlertEmail set and Remediation=dry-run (ap-southeast-2, so the
  e-mail conditions are taken), and again with SecurityHub=on,
  ChatTopic=create, Metrics=on, Remediation=apply and
  RemediationMaxActions=3 (eu-central-1, so the optional outputs' and the
  remediation's conditions are taken);
  deploy/iam-forwarder.yaml
  creates in us-east-1 with
  ConnectRegion=eu-west-2; template.yaml in central mode (us-west-2:
  MemberRoleName, two MemberAccounts, MemberExternalId, SweepRegions), and
  deploy/member.yaml, given the central stack's outputs, in two other
  accounts of the emulator (one in us-east-1 and eu-west-2, one in
  us-east-1), as StackSet instances would be. Each reaches CREATE_COMPLETE,
  and every resource whose Condition holds is created and exists in its
  service.
- Every Ref, Fn::GetAtt and Fn::Sub on the path the conditions take
  resolves against what was created (deploy/emulated_stack.py resolves them
  itself, from physical ids and describe calls), and the stack outputs moto
  reports equal that resolution.
- The wiring: the function's environment names the real topic, table and
  queues (the work queue FIFO with content-based deduplication); its event
  source mappings read the real queues; every rule targets the work queue in
  message group "<account>:<region>" with a standard dead-letter queue that
  exists; the queues' redrive targets exist; the queue policies allow exactly
  the deployed rules that deliver there; the alarms watch deployed resources
  and notify the operations topic (unencrypted), never the alert topic; the
  function reserves no concurrency, which Lambda would refuse in an account
  whose quota is 10. The optional outputs: off by default (SECURITY_HUB and
  METRICS off, CHAT_TOPIC_ARN empty, no grant, no dashboard and no
  ChecksIncompleteAlarm); when on, the function is told the created chat
  topic (under the alert key) and its role may publish there and import
  into the account's default Security Hub product, read back from IAM; with
  Metrics on, the dashboard is created under the stack's and Region's name,
  every metric it charts by dimension names a deployed resource, and
  ChecksIncompleteAlarm is made with the other alarms. Remediation: the
  function is told REMEDIATION and REMEDIATION_MAX_ACTIONS; off and dry-run
  leave the role without kms:CreateGrant; apply adds exactly the
  RemediateGrants statement, read back from IAM with its resolved
  conditions (a Connect SLR of the account, the required operations, on the
  account's keys in the Region); no stack grants iam:CreateServiceLinkedRole.
- The forwarder targets the eu-west-2 default bus with a role EventBridge may
  assume for that rule only and that may put events on that bus only, keeps
  what it cannot deliver in a standard dead-letter queue, and has an alarm
  on the rule's failures.
- Central mode: the single-account stacks carry no MEMBER_* variable, no
  organisation bus and no sts:AssumeRole; the central one is told its
  MEMBER_* settings and may assume arn:aws:iam::*:role/<MemberRoleName>
  only (read back from IAM); its organisation bus admits the two member
  accounts and carries the guard's five rules into the work queue. Each
  member account has one audit role (made by its us-east-1 stack only),
  trusted by the central function's role with the external id (and the
  organisation condition where given), reading only; the role the function
  will assume exists under the ARN it builds. Each member's rules (IAM's in
  us-east-1 only) target the central bus with a role that may only put
  events there and is assumable by those rules only, and a dead-letter
  queue; the alarm exists where asked for.
- Routing: each sample in events/ matches exactly its rule, read back from
  the deployed rules (ignored-* none), and, put on the deployed default bus,
  arrives at the function through the FIFO work queue in the account's
  message group; the IAM samples do so through the us-east-1 forwarder too;
  and each sample put on a member's bus reaches the central function through
  the organisation bus and the central work queue (IAM's from us-east-1
  only).

What the emulator cannot show (moto 5.2.5), and how each is checked instead
(each is named again where it is handled):

- MOTO_CFN_LACKS: resource types moto's CloudFormation does not create
  (queue policies, SNS subscriptions, alarms). Each such resource is resolved
  here, checked against the deployed resources, and made through its
  service's own API.
- FIFO queue names: CloudFormation appends ".fifo" to the name it generates
  for a FIFO queue; moto does not, and SQS then refuses the queue.
  name_fifo_queues_like_cloudformation() adds the suffix as CloudFormation does.
- A rule with only a ScheduleExpression: moto runs it on every event put on
  the bus (its empty pattern matches all), and never on its schedule.
  leave_bus_events_to_pattern_rules() keeps bus events to pattern rules; the
  schedule and its target are checked as configuration.
- Lambda invocation needs Docker in moto: record_function_invocations()
  records the exact SQS event the function would get instead.
- moto's Lambda ignores Architectures and LoggingConfig from CloudFormation,
  and sets ReservedConcurrentExecutions without Lambda's unreserved-minimum
  check: the first two are checked on the resolved properties, the last with
  PutFunctionConcurrency under MOTO_LAMBDA_CONCURRENCY_QUOTA=10.
- DescribeKey fails on a key moto's CloudFormation created (it keeps the
  KeyPolicy as an object): keys are read with ListKeys. GetRolePolicy returns
  a CloudFormation role's inline policy as a Python repr, not JSON: read with
  ast.literal_eval.
- PutEvents: moto accepts sources "aws.*", which EventBridge refuses from
  callers (so only the emulator can replay the samples through a bus); moto
  has no TestEventPattern. The deployed patterns are read back with
  DescribeRule and matched with moto's EventPattern, the matcher its bus
  uses; OPERATOR_PROBES checks that matcher on every operator the deployed
  patterns use.
- moto never fails a delivery (so RetryPolicy and DeadLetterConfig are never
  exercised), ignores queue policies and a target's RoleArn, and never
  evaluates alarms: the dead-letter queues, the policies, the forwarder's
  role and the alarms' wiring are checked as configuration.
- moto stores a dashboard's body as given; CloudWatch's PutDashboard
  validates it. The body read back must parse as JSON, equal the resolved
  template's, and name only deployed resources; its widget schema is not
  checked here (deploy/test_template.py checks what it charts).
- moto has no Security Hub and evaluates no IAM policy: the grants
  (BatchImportFindings, and the remediation's kms:CreateGrant) are read back
  from the role, not exercised (deploy/test_template.py evaluates the
  CreateGrant conditions on sample requests). Its CloudFormation keeps an inline
  policy statement that is Ref AWS::NoValue as null: role_statements() drops
  the nulls, as CloudFormation does (and condition_values() in a condition's
  list).
- Central mode: moto's CloudFormation gives an AWS::Events::EventBus no
  physical id, so a Ref to it is an object and a rule on it fails:
  ref_event_buses_by_name() makes it the name, as CloudFormation's Ref is.
  It creates the bus without its Policy property: the resolved policy is
  applied with PutPermission and read back. Its Ref of a rule on a custom
  bus is the rule's name, where CloudFormation's is "<bus>|<rule>":
  deploy/emulated_stack.py resolves CloudFormation's form.
- moto delivers a member's event to the central bus without the rule's role
  and without the bus policy, and stamps it with the receiving bus's account
  and Region where EventBridge keeps the member's: the roles and the policy
  are read back, and the delivered body's source, detail-type and detail
  are compared. Its STS assumes any role ARN without a trust policy: the
  audit role's trust is read back from IAM.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.awslambda.models import LambdaBackend
from moto.events.models import EventBus, EventPattern, Rule
from moto.sqs.models import Queue

from emulated_stack import ATTRIBUTES, Deployed, deploy, load_template, transform_sam, upload_code

REPO = Path(__file__).resolve().parent.parent
EVENTS = REPO / "events"
SAMCONFIG = tomllib.loads((REPO / "samconfig.toml").read_text())
GUARD_STACK = SAMCONFIG["default"]["global"]["parameters"]["stack_name"]
FORWARDER_STACK = SAMCONFIG["iam-forwarder"]["deploy"]["parameters"]["stack_name"]
GUARD_REGION = "eu-west-2"
EMAIL_REGION = "ap-southeast-2"
OUTPUTS_REGION = "eu-central-1"
FORWARDER_REGION = SAMCONFIG["iam-forwarder"]["deploy"]["parameters"]["region"]
ALERT_EMAIL = "on-call@example.com"
# Central mode (issue 15): the guard in the emulator's default account, two
# member accounts with member.yaml, one of them in two Regions.
CENTRAL_REGION = "us-west-2"
MEMBER_A, MEMBER_B = "444455556666", "777788889999"
MEMBER_STACK = "connect-slr-guard-member"
AUDIT_ROLE = "connect-slr-guard-audit"
EXTERNAL_ID = "guard-7f3c9e"
ORGANIZATION_ID = "o-a1b2c3d4e5"
LANDING_ZONE_TOPIC = "landing-zone-ops"
CENTRAL_PARAMETERS = {"MemberRoleName": AUDIT_ROLE, "MemberAccounts": f"{MEMBER_A},{MEMBER_B}",
                      "MemberExternalId": EXTERNAL_ID, "SweepRegions": f"{CENTRAL_REGION},us-east-1,eu-west-2"}
MEMBER_STACKS = ["member_a_east", "member_a_west", "member_b_east"]
STACKS = ["guard", "guard_with_email", "guard_with_outputs", "forwarder", "guard_central", *MEMBER_STACKS]

RULE = "AWS::Events::Rule"
QUEUE = "AWS::SQS::Queue"
FUNCTION = "AWS::Lambda::Function"

# Resource types moto 5.2.5's CloudFormation does not create (it lists them
# without a logical id and moves on). Each is resolved and made by hand.
MOTO_CFN_LACKS = {
    "AWS::SQS::QueuePolicy": "applied with SetQueueAttributes, and checked to allow exactly the deployed rules",
    "AWS::SNS::Subscription": "made with Subscribe on the deployed topic",
    "AWS::CloudWatch::Alarm": "made with PutMetricAlarm, its dimensions and actions checked against deployed resources",
}


# moto warns of each on every deploy; MOTO_CFN_LACKS says it here. (A filter
# cannot hold a colon: "." stands for each.)
pytestmark = [pytest.mark.filterwarnings(f"ignore:Tried to parse {kind.replace(':', '.')} but:UserWarning")
              for kind in MOTO_CFN_LACKS]


# ------------------------------------------------------------ the emulator
def name_fifo_queues_like_cloudformation(patch: pytest.MonkeyPatch) -> None:
    """moto gap: CloudFormation names an unnamed FIFO queue <generated>.fifo;
    moto generates the name without the suffix and SQS then refuses it."""
    original = Queue.create_from_cloudformation_json.__func__

    def create(cls, resource_name, cloudformation_json, *args, **kwargs):
        fifo = str(cloudformation_json["Properties"].get("FifoQueue")).lower() == "true"
        if fifo and not resource_name.endswith(".fifo"):
            resource_name += ".fifo"
        return original(cls, resource_name, cloudformation_json, *args, **kwargs)

    patch.setattr(Queue, "create_from_cloudformation_json", classmethod(create))


def record_function_invocations(patch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """moto gap: it runs a function in Docker. Record (function ARN, event)
    instead and report success, so the event source mapping deletes the message."""
    invocations: list[tuple[str, dict]] = []

    def invoke(backend, function_name, qualifier, body, headers, response_headers):
        invocations.append((function_name, json.loads(body)))
        return b""

    patch.setattr(LambdaBackend, "invoke", invoke)
    return invocations


def ref_event_buses_by_name(patch: pytest.MonkeyPatch) -> None:
    """moto gap: its CloudFormation has no physical id for an
    AWS::Events::EventBus, so a Ref to one is the bus object, and a rule on it
    then fails to create. CloudFormation's Ref of a bus is its name."""
    patch.setattr(EventBus, "physical_resource_id", property(lambda bus: bus.name), raising=False)


def leave_bus_events_to_pattern_rules(patch: pytest.MonkeyPatch) -> None:
    """moto gap: a rule with only a ScheduleExpression has an empty pattern,
    which moto matches against every event put on the bus; EventBridge only
    runs it on its schedule."""
    original = Rule.send_to_targets

    def send_to_targets(rule, event, *args, **kwargs):
        if rule.scheduled_expression and not rule.event_pattern.get_pattern():
            return None
        return original(rule, event, *args, **kwargs)

    patch.setattr(Rule, "send_to_targets", send_to_targets)


@dataclass
class Emulator:
    invocations: list[tuple[str, dict]]  # (function ARN, event), in order


@pytest.fixture(scope="module")
def emulator():
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            patch.delenv(key)  # e.g. AWS_ENDPOINT_URL would send the SDK past the mock
        patch.setenv("AWS_DEFAULT_REGION", GUARD_REGION)  # samtranslator asks boto3 for a partition
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        name_fifo_queues_like_cloudformation(patch)
        ref_event_buses_by_name(patch)
        leave_bus_events_to_pattern_rules(patch)
        recorded = record_function_invocations(patch)
        with mock_aws():
            yield Emulator(recorded)


def deploy_guard(region: str, parameters: dict[str, str] | None = None) -> Deployed:
    bucket, key = f"connect-slr-guard-code-{region}", "guard.zip"
    upload_code(region, bucket, key)
    template = transform_sam(load_template(REPO / "template.yaml"), bucket, key)
    return deploy(GUARD_STACK, region, template, parameters)


@pytest.fixture(scope="module")
def guard(emulator) -> Deployed:
    return deploy_guard(GUARD_REGION)


@pytest.fixture(scope="module")
def guard_with_email(emulator) -> Deployed:
    return deploy_guard(EMAIL_REGION, {"AlertEmail": ALERT_EMAIL, "Remediation": "dry-run"})


@pytest.fixture(scope="module")
def guard_with_outputs(emulator) -> Deployed:
    return deploy_guard(OUTPUTS_REGION, {"SecurityHub": "on", "ChatTopic": "create", "Metrics": "on",
                                         "Remediation": "apply", "RemediationMaxActions": "3"})


@pytest.fixture(scope="module")
def forwarder(emulator, guard) -> Deployed:
    template = load_template(REPO / "deploy" / "iam-forwarder.yaml")
    return deploy(FORWARDER_STACK, FORWARDER_REGION, template, {"ConnectRegion": GUARD_REGION})


@pytest.fixture(scope="module")
def guard_central(emulator) -> Deployed:
    return deploy_guard(CENTRAL_REGION, CENTRAL_PARAMETERS)


@functools.cache
def session_in(account: str) -> boto3.Session:
    """Credentials that act in another account of the emulator (moto's STS
    returns them for any role ARN; it checks no trust policy)."""
    credentials = boto3.client("sts", region_name=GUARD_REGION).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="stacksets")["Credentials"]
    session = boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"])
    assert session.client("sts", region_name=GUARD_REGION).get_caller_identity()["Account"] == account
    return session


def deploy_member(central: Deployed, account: str, region: str, parameters: dict[str, str]) -> Deployed:
    """deploy/member.yaml as a StackSet instance would create it in that account and Region."""
    template = load_template(REPO / "deploy" / "member.yaml")
    given = {"CentralRoleArn": central.outputs["FunctionRoleArn"],
             "CentralEventBusArn": central.outputs["OrganizationEventBusArn"], **parameters}
    return deploy(MEMBER_STACK, region, template, given, session_in(account))


@pytest.fixture(scope="module")
def member_a_east(guard_central) -> Deployed:
    """us-east-1: the audit role and the IAM rule; an operations topic for the alarm."""
    return deploy_member(guard_central, MEMBER_A, "us-east-1", {"ExternalId": EXTERNAL_ID, "OpsEmail": ALERT_EMAIL})


@pytest.fixture(scope="module")
def member_a_west(guard_central, member_a_east) -> Deployed:
    """The same account in eu-west-2: rules only (the role is us-east-1's); the
    alarm to a topic every account already has (as a landing zone makes one)."""
    session_in(MEMBER_A).client("sns", region_name="eu-west-2").create_topic(Name=LANDING_ZONE_TOPIC)
    return deploy_member(guard_central, MEMBER_A, "eu-west-2", {"ExternalId": EXTERNAL_ID, "OpsTopicName": LANDING_ZONE_TOPIC})


@pytest.fixture(scope="module")
def member_b_east(guard_central) -> Deployed:
    """Another account, trusting with the external id and the organisation condition, no alarm."""
    return deploy_member(guard_central, MEMBER_B, "us-east-1", {"ExternalId": EXTERNAL_ID, "OrganizationId": ORGANIZATION_ID})


@pytest.fixture(params=STACKS)
def stack(request) -> Deployed:
    return request.getfixturevalue(request.param)


# ------------------------------------------------------------------ helpers
@functools.cache
def default_account() -> str:
    return boto3.client("sts", region_name=GUARD_REGION).get_caller_identity()["Account"]


@functools.cache
def client(service: str, region: str, account: str | None = None):
    """A client in that Region, acting in that account (default: the emulator's own)."""
    if account is None or account == default_account():
        return boto3.client(service, region_name=region)
    return session_in(account).client(service, region_name=region)


def queue_url(arn: str) -> str:
    _, _, _, region, account, name = arn.split(":")
    return client("sqs", region, account).get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]


def queue_attributes(url: str) -> dict[str, str]:
    region, account = url.split(".")[1], url.split("/")[3]
    return client("sqs", region, account).get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def properties(stack: Deployed, logical_id: str) -> dict:
    return stack.resolve(stack.template["Resources"][logical_id].get("Properties", {}))


def rule_bus(stack: Deployed, rule_id: str) -> str:
    """The bus a rule is on, as deployed (its EventBusName, else the default bus)."""
    return properties(stack, rule_id).get("EventBusName", "default")


def rule_name(stack: Deployed, rule_id: str) -> str:
    """moto's physical id of a rule is its name (CloudFormation's Ref, on a custom bus, is "<bus>|<name>")."""
    return stack.physical_id(rule_id)


def deployed_targets(stack: Deployed, rule_id: str) -> list[dict]:
    return stack.client("events").list_targets_by_rule(
        Rule=rule_name(stack, rule_id), EventBusName=rule_bus(stack, rule_id))["Targets"]


def deployed_rule(stack: Deployed, rule_id: str) -> dict:
    return stack.client("events").describe_rule(Name=rule_name(stack, rule_id), EventBusName=rule_bus(stack, rule_id))


def rule_on_any_bus(stack: Deployed, name: str) -> dict:
    """A rule of the stack's account and Region by name, whichever bus it is on."""
    events = stack.client("events")
    found = [r for bus in events.list_event_buses()["EventBuses"]
             for r in events.list_rules(EventBusName=bus["Name"])["Rules"] if r["Name"] == name]
    assert len(found) == 1, f"{name}: {len(found)} rules of that name"
    return found[0]


def function_id(stack: Deployed) -> str:
    [logical_id] = stack.of_type(FUNCTION)
    return logical_id


def function_configuration(stack: Deployed) -> dict:
    name = stack.physical_id(function_id(stack))
    return stack.client("lambda").get_function(FunctionName=name)["Configuration"]


def work_queue_arn(stack: Deployed) -> str:
    url = function_configuration(stack)["Environment"]["Variables"]["WORK_QUEUE_URL"]
    return queue_attributes(url)["QueueArn"]


def message_group(stack: Deployed) -> str:
    return f"{stack.account}:{stack.region}"


# Does a physical id name a live resource? One reader per resource type.
EXISTS = {
    RULE: rule_on_any_bus,
    "AWS::Events::EventBus": lambda s, name: s.client("events").describe_event_bus(Name=name),
    "AWS::Logs::LogGroup": ATTRIBUTES[("AWS::Logs::LogGroup", "Arn")],
    "AWS::IAM::Role": lambda s, name: s.client("iam").get_role(RoleName=name),
    "AWS::KMS::Key": ATTRIBUTES[("AWS::KMS::Key", "Arn")],  # moto gap: DescribeKey fails on it (see there)
    "AWS::KMS::Alias": lambda s, alias: next(a for a in s.client("kms").list_aliases()["Aliases"]
                                             if a["AliasName"] == alias),
    "AWS::SNS::Topic": lambda s, arn: s.client("sns").get_topic_attributes(TopicArn=arn),
    "AWS::DynamoDB::Table": lambda s, name: s.client("dynamodb").describe_table(TableName=name),
    QUEUE: lambda s, url: s.client("sqs").get_queue_attributes(QueueUrl=url),
    FUNCTION: lambda s, name: s.client("lambda").get_function(FunctionName=name),
    "AWS::Lambda::EventSourceMapping": lambda s, uuid: s.client("lambda").get_event_source_mapping(UUID=uuid),
    "AWS::CloudWatch::Dashboard": lambda s, name: s.client("cloudwatch").get_dashboard(DashboardName=name),
}


# ------------------------------------------------- every resource, every Ref
def test_every_resource_is_created_and_exists(stack):
    expected = stack.expected()
    for logical_id, resource in expected.items():
        kind = resource["Type"]
        if kind in MOTO_CFN_LACKS:
            assert logical_id not in stack.created, f"moto now creates {kind}: take it out of MOTO_CFN_LACKS"
            continue
        assert kind in EXISTS, f"{logical_id}: no existence check for {kind}; add one to EXISTS"
        summary = stack.created.get(logical_id)
        assert summary, f"{logical_id} ({kind}) was not created"
        assert (summary["ResourceType"], summary["ResourceStatus"]) == (kind, "CREATE_COMPLETE"), logical_id
        assert EXISTS[kind](stack, summary["PhysicalResourceId"]), logical_id
    assert set(stack.created) == {i for i, r in expected.items() if r["Type"] not in MOTO_CFN_LACKS}


def test_every_ref_getatt_and_sub_resolves_against_what_was_created(stack):
    for logical_id, resource in stack.expected().items():
        for node in stack.taken_intrinsics(resource.get("Properties", {})):
            value = stack.resolve(node)  # raises Unresolved
            assert value is not None and "${" not in str(value), (logical_id, node, value)


def test_the_stack_outputs_resolve_to_what_was_created(stack):
    outputs = stack.template.get("Outputs", {})
    assert stack.outputs == {key: stack.resolve(o["Value"]) for key, o in outputs.items()
                             if "Condition" not in o or stack.condition(o["Condition"])}


# ------------------------------------------------------------ the function
def test_the_function_environment_names_the_deployed_resources(guard):
    config = function_configuration(guard)
    env = config["Environment"]["Variables"]
    assert env == properties(guard, function_id(guard))["Environment"]["Variables"]
    assert env["ALERT_TOPIC_ARN"] == guard.outputs["AlertTopicArn"]
    alert_topic = guard.client("sns").get_topic_attributes(TopicArn=env["ALERT_TOPIC_ARN"])["Attributes"]
    assert alert_topic["KmsMasterKeyId"] == guard.physical_id("AlertKey")  # encrypted with the key created
    guard.client("dynamodb").describe_table(TableName=env["LEDGER_TABLE"])
    queue_attributes(env["RECHECK_QUEUE_URL"])
    work = queue_attributes(env["WORK_QUEUE_URL"])
    assert (work["FifoQueue"], work["ContentBasedDeduplication"]) == ("true", "true")
    assert env["WORK_QUEUE_URL"] == guard.outputs["WorkQueueUrl"]
    EXISTS["AWS::IAM::Role"](guard, config["Role"].rsplit("/", 1)[1])


def test_function_settings_moto_drops_resolve_to_deployed_values(guard):
    """moto gap: its Lambda ignores Architectures and LoggingConfig from CloudFormation."""
    props = properties(guard, function_id(guard))
    assert props["Architectures"] == [guard.parameters["Architecture"]] == ["arm64"]
    log_group = props["LoggingConfig"]["LogGroup"]
    assert guard.client("logs").describe_log_groups(logGroupNamePrefix=log_group)["logGroups"][0][
        "logGroupName"] == log_group
    # Not the automatic log group of a function named like the stack (issue 12, item 6).
    assert log_group != f"/aws/lambda/{guard.name}"


def role_statements(stack: Deployed) -> list[dict]:
    """The function's role's inline policy statements, read back from IAM.
    moto gap: its CloudFormation keeps a statement that is Ref AWS::NoValue
    as null, where CloudFormation drops it; the nulls are dropped here."""
    role_name = function_configuration(stack)["Role"].rsplit("/", 1)[1]
    documents = inline_policies(stack.client("iam"), role_name)
    return [s for d in documents for s in as_list(d["Statement"]) if s is not None]


def grants_of(stack: Deployed, action: str) -> list[str]:
    return [r for s in role_statements(stack) if action in as_list(s["Action"]) for r in as_list(s["Resource"])]


def test_the_optional_outputs_are_off_by_default(guard):
    env = function_configuration(guard)["Environment"]["Variables"]
    assert (env["SECURITY_HUB"], env["CHAT_TOPIC_ARN"], env["METRICS"]) == ("off", "", "off")
    assert "ChatTopicArn" not in guard.outputs
    assert grants_of(guard, "securityhub:BatchImportFindings") == []
    assert grants_of(guard, "sns:Publish") == [guard.outputs["AlertTopicArn"]]


# Made only with Metrics on (ChecksIncompleteAlarm: by PutMetricAlarm, see
# test_alarms_watch_deployed_resources_and_notify_live_topics).
METRICS_RESOURCES = {"GuardDashboard": "AWS::CloudWatch::Dashboard", "ChecksIncompleteAlarm": "AWS::CloudWatch::Alarm"}


@pytest.mark.parametrize("name", ["guard", "guard_with_email"])
def test_without_metrics_there_is_no_dashboard_and_no_alarm_on_them(request, name):
    stack = request.getfixturevalue(name)
    assert function_configuration(stack)["Environment"]["Variables"]["METRICS"] == "off"
    assert not set(METRICS_RESOURCES) & (set(stack.expected()) | set(stack.created))
    assert stack.client("cloudwatch").list_dashboards()["DashboardEntries"] == []
    assert not {"DashboardName", "DashboardUrl"} & set(stack.outputs)


def test_with_metrics_on_the_function_is_told_and_the_dashboard_and_alarm_are_made(guard_with_outputs):
    stack = guard_with_outputs
    assert function_configuration(stack)["Environment"]["Variables"]["METRICS"] == "on"
    for logical_id, kind in METRICS_RESOURCES.items():
        assert logical_id in stack.of_type(kind), logical_id
    assert {"DashboardName", "DashboardUrl"} <= set(stack.outputs)


def test_security_hub_and_a_created_chat_topic_are_wired_and_granted(guard_with_outputs):
    stack = guard_with_outputs
    env = function_configuration(stack)["Environment"]["Variables"]
    assert env["SECURITY_HUB"] == "on"
    chat = env["CHAT_TOPIC_ARN"]
    assert chat == stack.outputs["ChatTopicArn"] == stack.physical_id("ChatNotificationTopic")
    topic = stack.client("sns").get_topic_attributes(TopicArn=chat)["Attributes"]
    assert topic["KmsMasterKeyId"] == stack.physical_id("AlertKey")  # the key the role may already use via SNS
    assert sorted(grants_of(stack, "sns:Publish")) == sorted([stack.outputs["AlertTopicArn"], chat])
    account = stack.account
    assert grants_of(stack, "securityhub:BatchImportFindings") == [
        f"arn:aws:securityhub:{OUTPUTS_REGION}:{account}:product/{account}/default"]


# ------------------------------------------------------------- remediation
GUARD_STACKS = ["guard", "guard_with_email", "guard_with_outputs"]


def granted_actions(stack: Deployed) -> set[str]:
    return {a for s in role_statements(stack) if s["Effect"] == "Allow" for a in as_list(s["Action"])}


@pytest.mark.parametrize("name, mode, max_actions", [
    ("guard", "off", "5"), ("guard_with_email", "dry-run", "5"), ("guard_with_outputs", "apply", "3")])
def test_the_function_is_told_the_remediation_mode_and_cap(request, name, mode, max_actions):
    env = function_configuration(request.getfixturevalue(name))["Environment"]["Variables"]
    assert (env["REMEDIATION"], env["REMEDIATION_MAX_ACTIONS"]) == (mode, max_actions)


@pytest.mark.parametrize("name", ["guard", "guard_with_email"])
def test_off_and_dry_run_grant_no_write(request, name, guard):
    stack = request.getfixturevalue(name)
    assert grants_of(stack, "kms:CreateGrant") == []
    assert not [s for s in role_statements(stack) if s.get("Sid") == "RemediateGrants"]
    # The same role as the defaults (the e-mail changes no permission).
    assert granted_actions(stack) == granted_actions(guard)


def test_apply_adds_only_the_conditioned_grant_write(guard_with_outputs, guard):
    """Read back from IAM (moto evaluates no policy: the conditions are compared, not exercised)."""
    stack = guard_with_outputs
    account = stack.account
    [statement] = [s for s in role_statements(stack) if "kms:CreateGrant" in as_list(s["Action"])]
    assert statement == {
        "Sid": "RemediateGrants", "Effect": "Allow", "Action": "kms:CreateGrant",
        "Resource": f"arn:aws:kms:{OUTPUTS_REGION}:{account}:key/*",
        "Condition": {
            "StringLike": {"kms:GranteePrincipal": f"arn:aws:iam::{account}:role/aws-service-role/"
                                                   "connect.amazonaws.com/AWSServiceRoleForAmazonConnect_*"},
            # The parameter's operations, and GenerateDataKey, which storage
            # and stream keys need whatever is configured.
            "ForAllValues:StringEquals": {
                "kms:GrantOperations": [*stack.parameters["RequiredGrantOperations"].split(","), "GenerateDataKey"]},
            "Null": {"kms:GrantOperations": "false"},
        },
    }
    assert set(statement["Condition"]["ForAllValues:StringEquals"]["kms:GrantOperations"]) == {"Decrypt", "GenerateDataKey"}
    # Beyond the defaults' role: the optional outputs' grants and this one write, nothing else.
    assert granted_actions(stack) - granted_actions(guard) == {"securityhub:BatchImportFindings", "kms:CreateGrant"}
    role = stack.client("iam").get_role(RoleName=function_configuration(stack)["Role"].rsplit("/", 1)[1])["Role"]
    assert "kms:CreateGrant" in role["Description"]


@pytest.mark.parametrize("name", GUARD_STACKS)
def test_no_stack_may_create_a_service_linked_role(request, name):
    actions = {a.lower() for a in granted_actions(request.getfixturevalue(name))}
    assert "iam:createservicelinkedrole" not in actions
    assert not {a for a in actions if a.startswith("iam:") and not a.startswith(("iam:get", "iam:list"))}


def charted_dimensions(body: dict) -> list[dict[str, str]]:
    """The dimensions of every metric the dashboard charts."""
    out = []
    for w in body["widgets"]:
        for m in w["properties"]["metrics"]:
            fields = [f for f in m if not isinstance(f, dict)]
            out.append(dict(zip(fields[2::2], fields[3::2])))
    return out


def test_the_dashboard_is_created_and_charts_deployed_resources(guard_with_outputs):
    """Metrics on. moto gap: it stores the body unvalidated (see the module docstring)."""
    stack = guard_with_outputs
    dashboard = stack.client("cloudwatch").get_dashboard(DashboardName=stack.physical_id("GuardDashboard"))
    assert dashboard["DashboardName"] == stack.outputs["DashboardName"] == f"{stack.name}-{stack.region}"
    assert stack.outputs["DashboardUrl"].endswith(f"#dashboards/dashboard/{dashboard['DashboardName']}")
    body = json.loads(dashboard["DashboardBody"])
    assert body == json.loads(properties(stack, "GuardDashboard")["DashboardBody"])
    assert {w["properties"]["region"] for w in body["widgets"]} == {stack.region}
    dimensions = [d for d in charted_dimensions(body) if d]
    assert dimensions
    for found in dimensions:
        for key, value in found.items():
            assert key in DIMENSION_EXISTS, f"add a check for {key}"
            DIMENSION_EXISTS[key](stack, value)


def test_the_function_deploys_in_an_account_whose_concurrency_quota_is_10(guard, monkeypatch):
    """moto gap: its CloudFormation sets ReservedConcurrentExecutions without
    Lambda's check that 100 executions stay unreserved; PutFunctionConcurrency
    runs it under MOTO_LAMBDA_CONCURRENCY_QUOTA."""
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "10")
    name = guard.physical_id(function_id(guard))
    with pytest.raises(ClientError, match="UnreservedConcurrentExecution"):
        guard.client("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    assert "ReservedConcurrentExecutions" not in properties(guard, function_id(guard))


def test_the_event_source_mappings_feed_the_function_from_its_queues(guard):
    function_arn = function_configuration(guard)["FunctionArn"]
    sources = set()
    for logical_id in guard.of_type("AWS::Lambda::EventSourceMapping"):
        mapping = guard.client("lambda").get_event_source_mapping(UUID=guard.physical_id(logical_id))
        props = properties(guard, logical_id)
        assert mapping["EventSourceArn"] == props["EventSourceArn"], logical_id
        assert mapping["FunctionArn"] == function_arn, logical_id
        assert (mapping["BatchSize"], mapping["FunctionResponseTypes"]) == (
            props["BatchSize"], props["FunctionResponseTypes"]), logical_id
        queue_url(mapping["EventSourceArn"])
        sources.add(mapping["EventSourceArn"])
    env = function_configuration(guard)["Environment"]["Variables"]
    assert sources == {queue_attributes(env[v])["QueueArn"] for v in ("WORK_QUEUE_URL", "RECHECK_QUEUE_URL")}


# ------------------------------------------------------- rules and queues
# EventBridge's limits on a target's retry policy (PutTargets).
RETRY_ATTEMPTS_ALLOWED = range(0, 186)
EVENT_AGE_SECONDS_ALLOWED = range(60, 86401)


def check_target(stack: Deployed, rule_id: str, target: dict) -> None:
    service, resource = target["Arn"].split(":")[2], target["Arn"].split(":", 5)[5]
    if service == "sqs":
        attributes = queue_attributes(queue_url(target["Arn"]))
        if attributes.get("FifoQueue") == "true":
            assert attributes["ContentBasedDeduplication"] == "true", rule_id  # EventBridge sends no dedup id
            assert target["SqsParameters"]["MessageGroupId"] == message_group(stack), rule_id
    elif service == "events" and resource.startswith("event-bus/"):
        region, account = target["Arn"].split(":")[3:5]
        assert client("events", region, account).describe_event_bus(Name=resource.split("/", 1)[1])["Arn"] == target["Arn"]
        assert "RoleArn" in target, f"{rule_id}: EventBridge needs a role to put events on another bus"
        stack.client("iam").get_role(RoleName=target["RoleArn"].rsplit("/", 1)[1])
    else:
        raise AssertionError(f"{rule_id}: no check for a target {target['Arn']}")
    if "DeadLetterConfig" in target:
        dead_letters = queue_attributes(queue_url(target["DeadLetterConfig"]["Arn"]))
        assert dead_letters.get("FifoQueue", "false") == "false", f"{rule_id}: a rule's DLQ must be standard"
        assert target["DeadLetterConfig"]["Arn"].split(":")[3] == stack.region, f"{rule_id}: DLQ in another Region"
    if "RetryPolicy" in target:
        assert target["RetryPolicy"]["MaximumRetryAttempts"] in RETRY_ATTEMPTS_ALLOWED, rule_id
        assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] in EVENT_AGE_SECONDS_ALLOWED, rule_id


def test_every_rule_target_is_as_declared_and_names_live_resources(stack):
    for rule_id in stack.of_type(RULE):
        targets = deployed_targets(stack, rule_id)
        assert targets == properties(stack, rule_id)["Targets"], rule_id
        for target in targets:
            check_target(stack, rule_id, target)


def test_every_guard_rule_feeds_the_work_queue_in_the_accounts_message_group(guard):
    rules = guard.of_type(RULE)
    assert rules
    for rule_id in rules:
        [target] = deployed_targets(guard, rule_id)
        assert target["Arn"] == work_queue_arn(guard), rule_id
        assert target["SqsParameters"] == {"MessageGroupId": f"{guard.account}:{GUARD_REGION}"}, rule_id
        assert "DeadLetterConfig" in target and "RetryPolicy" in target, rule_id


def test_the_sweep_is_a_schedule_into_the_work_queue(guard):
    """moto gap: it never fires a schedule, so the schedule and target are checked."""
    rules = {i: deployed_rule(guard, i) for i in guard.of_type(RULE)}
    schedules = {i: r["ScheduleExpression"] for i, r in rules.items() if "ScheduleExpression" in r}
    assert schedules == {"Sweep": guard.parameters["SweepSchedule"]} == {"Sweep": "rate(1 hour)"}
    assert rules["Sweep"]["State"] == "ENABLED"
    [target] = deployed_targets(guard, "Sweep")
    assert target["Arn"] == work_queue_arn(guard)


def test_every_redrive_target_exists_and_matches_the_queue_type(stack):
    for logical_id in stack.of_type(QUEUE):
        attributes = queue_attributes(stack.physical_id(logical_id))
        if "RedrivePolicy" not in attributes:
            continue
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive == properties(stack, logical_id)["RedrivePolicy"], logical_id
        dead_letters = queue_attributes(queue_url(redrive["deadLetterTargetArn"]))
        assert dead_letters.get("FifoQueue", "false") == attributes.get("FifoQueue", "false"), logical_id


# --------------------------------------- what moto's CloudFormation lacks
def rules_delivering_to(stack: Deployed, queue_arn: str) -> set[str]:
    """ARNs of the stack's rules that send to the queue, as target or dead-letter queue."""
    arns = set()
    for rule_id in stack.of_type(RULE):
        for target in deployed_targets(stack, rule_id):
            if queue_arn in (target["Arn"], target.get("DeadLetterConfig", {}).get("Arn")):
                arns.add(deployed_rule(stack, rule_id)["Arn"])
    return arns


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_queue_policies_apply_and_allow_exactly_the_deployed_rules(stack):
    """MOTO_CFN_LACKS AWS::SQS::QueuePolicy (and moto's EventBridge ignores queue policies)."""
    for logical_id in stack.of_type("AWS::SQS::QueuePolicy"):
        props = properties(stack, logical_id)
        document = props["PolicyDocument"]
        for url in props["Queues"]:
            stack.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(document)})
            assert json.loads(queue_attributes(url)["Policy"]) == document, logical_id
            arn = queue_attributes(url)["QueueArn"]
            for statement in document["Statement"]:
                if statement["Effect"] == "Allow" and statement["Principal"] == {"Service": "events.amazonaws.com"}:
                    assert statement["Resource"] == arn, logical_id
                    allowed = set(as_list(statement["Condition"]["ArnEquals"]["aws:SourceArn"]))
                    assert allowed == rules_delivering_to(stack, arn), logical_id


def test_subscriptions_are_made_on_the_deployed_topics(stack):
    """MOTO_CFN_LACKS AWS::SNS::Subscription."""
    sns = stack.client("sns")
    topics = {stack.physical_id(i) for i in stack.of_type("AWS::SNS::Topic")}
    for logical_id in stack.of_type("AWS::SNS::Subscription"):
        props = properties(stack, logical_id)
        assert props["TopicArn"] in topics, logical_id
        sns.subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"])
        made = sns.list_subscriptions_by_topic(TopicArn=props["TopicArn"])["Subscriptions"]
        assert (props["Protocol"], props["Endpoint"]) in {(s["Protocol"], s["Endpoint"]) for s in made}, logical_id


def subscriptions(stack: Deployed) -> set[tuple[str, str, str]]:
    """(topic ARN, protocol, endpoint) of each subscription the stack declares."""
    declared = [properties(stack, i) for i in stack.of_type("AWS::SNS::Subscription")]
    return {(p["TopicArn"], p["Protocol"], p["Endpoint"]) for p in declared}


def test_alert_email_subscribes_to_the_alert_and_the_operations_topics(guard, guard_with_email):
    assert subscriptions(guard) == set()
    outputs = guard_with_email.outputs
    assert subscriptions(guard_with_email) == {
        (outputs["AlertTopicArn"], "email", ALERT_EMAIL), (outputs["OpsTopicArn"], "email", ALERT_EMAIL)}


# Does a metric dimension's value name a live resource?
DIMENSION_EXISTS = {
    "FunctionName": lambda s, name: s.client("lambda").get_function(FunctionName=name),
    "QueueName": lambda s, name: s.client("sqs").get_queue_url(QueueName=name),
    "RuleName": rule_on_any_bus,
    "EventBusName": lambda s, name: s.client("events").describe_event_bus(Name=name),
}


def alarm_dimensions(alarm: dict) -> list[dict]:
    queries = [q["MetricStat"]["Metric"] for q in alarm.get("Metrics", []) if "MetricStat" in q]
    return [d for metric in [alarm, *queries] for d in metric.get("Dimensions", [])]


def alarm_actions(alarm: dict) -> list[str]:
    return [a for key in ("AlarmActions", "OKActions", "InsufficientDataActions") for a in alarm.get(key, [])]


def test_alarms_watch_deployed_resources_and_notify_live_topics(stack):
    """MOTO_CFN_LACKS AWS::CloudWatch::Alarm (and moto never evaluates alarms)."""
    cloudwatch = stack.client("cloudwatch")
    for logical_id in stack.of_type("AWS::CloudWatch::Alarm"):
        props = properties(stack, logical_id)
        for dimension in alarm_dimensions(props):
            assert dimension["Name"] in DIMENSION_EXISTS, f"{logical_id}: add a check for {dimension['Name']}"
            DIMENSION_EXISTS[dimension["Name"]](stack, dimension["Value"])
        assert alarm_actions(props), f"{logical_id} notifies no one"
        for topic in alarm_actions(props):
            stack.client("sns").get_topic_attributes(TopicArn=topic)
        name = props.pop("AlarmName", f"{stack.name}-{logical_id}")
        cloudwatch.put_metric_alarm(AlarmName=name, **props)
        assert cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"], logical_id


def test_guard_alarms_notify_the_operations_topic_not_the_alert_topic(guard):
    alarms = guard.of_type("AWS::CloudWatch::Alarm")
    assert alarms
    for logical_id in alarms:
        assert alarm_actions(properties(guard, logical_id)) == [guard.outputs["OpsTopicArn"]], logical_id
    assert guard.outputs["OpsTopicArn"] != guard.outputs["AlertTopicArn"]
    # CloudWatch cannot publish under alias/aws/sns; the alert key must not be on the alarm path.
    ops = guard.client("sns").get_topic_attributes(TopicArn=guard.outputs["OpsTopicArn"])["Attributes"]
    assert "KmsMasterKeyId" not in ops


# ----------------------------------------------------------------- routing
SAMPLES = sorted(p.name for p in EVENTS.glob("*.json"))
KMS_OWN_EVENTS = {"kms-cmk-deletion.json", "kms-imported-key-material-expiration.json"}
RULE_BY_PREFIX = {"iam": "IamEvents", "connect": "ConnectEvents", "profiles": "ProfilesEvents", "kms": "KmsApiEvents"}


def expected_rule(filename: str) -> str | None:
    if filename.startswith("ignored-"):
        return None
    if filename == "scheduled-sweep.json":
        return "Sweep"
    if filename in KMS_OWN_EVENTS:
        return "KmsKeyEvents"
    prefix = filename.split("-", 1)[0]
    assert prefix in RULE_BY_PREFIX, f"{filename}: which rule should route it? (RULE_BY_PREFIX)"
    return RULE_BY_PREFIX[prefix]


def sample(filename: str) -> dict:
    return json.loads((EVENTS / filename).read_text())


def deployed_patterns(stack: Deployed) -> dict[str, dict]:
    """Logical id -> the event pattern the emulator holds for that rule (schedules have none)."""
    rules = {i: deployed_rule(stack, i) for i in stack.of_type(RULE)}
    return {i: json.loads(r["EventPattern"]) for i, r in rules.items() if "EventPattern" in r}


def rules_matching(stack: Deployed, event: dict) -> list[str]:
    """moto gap: no TestEventPattern; this is the matcher moto's bus runs for each rule."""
    patterns = deployed_patterns(stack)
    return sorted(i for i, p in patterns.items() if EventPattern.load(json.dumps(p)).matches_event(event))


def bus_entry(event: dict) -> dict:
    """A PutEvents entry for a sample. moto gap: it accepts "aws.*" sources;
    EventBridge refuses them from callers, so this replay is emulator-only."""
    return {"Source": event["source"], "DetailType": event["detail-type"],
            "Detail": json.dumps(event["detail"]), "Resources": event.get("resources", [])}


def work_records(stack: Deployed, invocations: list[tuple[str, dict]]) -> list[dict]:
    """SQS records the stack's function received, in the order received."""
    function_arn = function_configuration(stack)["FunctionArn"]
    return [r for arn, event in invocations if arn == function_arn for r in event["Records"]]


def test_there_are_samples_for_every_rule(guard):
    assert {expected_rule(s) for s in SAMPLES} == set(guard.of_type(RULE)) | {None}


@pytest.mark.parametrize("filename", SAMPLES)
def test_each_sample_matches_exactly_its_deployed_rule(guard, filename):
    want = expected_rule(filename)
    # A schedule rule has no pattern: a bus event never matches it.
    assert rules_matching(guard, sample(filename)) == ([want] if want not in (None, "Sweep") else [])


def check_delivered(stack: Deployed, records: list[dict], event: dict) -> None:
    # Exactly one: moto forgets a FIFO deduplication id once its message is
    # deleted, so a second rule routing the same event would show here.
    [record] = records
    assert record["eventSourceARN"] == work_queue_arn(stack)
    assert record["attributes"]["MessageGroupId"] == message_group(stack)
    delivered = json.loads(record["body"])
    assert (delivered["source"], delivered["detail-type"], delivered["detail"]) == (
        event["source"], event["detail-type"], event["detail"])


@pytest.mark.parametrize("filename", SAMPLES)
def test_each_routed_sample_reaches_the_function_through_the_work_queue(guard, emulator, filename):
    event = sample(filename)
    emulator.invocations.clear()
    response = guard.client("events").put_events(Entries=[bus_entry(event)])
    assert response["FailedEntryCount"] == 0
    records = work_records(guard, emulator.invocations)
    if expected_rule(filename) in (None, "Sweep"):
        assert records == []
    else:
        check_delivered(guard, records, event)


# EventBridge pattern operators: a pattern using each, an event it matches and
# one it does not, as the EventBridge documentation defines them. moto's
# matcher must agree for every operator the deployed patterns use.
OPERATOR_PROBES = {
    "exists": ({"f": [{"exists": False}]}, {"g": "x"}, {"f": "x"}),
    "prefix/equals-ignore-case": ({"f": [{"prefix": {"equals-ignore-case": "AbC"}}]}, {"f": "aBcD"}, {"f": "xabc"}),
    "wildcard": ({"f": [{"wildcard": "*Conn*"}]}, {"f": "role/Connect_1"}, {"f": "role/connect_1"}),
    "$or": ({"$or": [{"f": ["a"]}, {"g": ["b"]}]}, {"g": "b"}, {"f": "b"}),
    "equals-ignore-case": ({"f": [{"equals-ignore-case": "AbC"}]}, {"f": "aBc"}, {"f": "aBcD"}),
    "prefix": ({"f": [{"prefix": "AbC"}]}, {"f": "AbCd"}, {"f": "abcd"}),
    "suffix": ({"f": [{"suffix": "AbC"}]}, {"f": "xAbC"}, {"f": "xabc"}),
    "anything-but": ({"f": [{"anything-but": ["a"]}]}, {"f": "b"}, {"f": "a"}),
}


def operators(pattern: dict) -> set[str]:
    """The operators a pattern uses, e.g. {"$or", "exists", "prefix/equals-ignore-case"}."""
    found = set()
    for key, value in pattern.items():
        if key == "$or":
            found.add(key)
            found |= {op for alternative in value for op in operators(alternative)}
        elif isinstance(value, dict):
            found |= operators(value)
        else:
            for condition in value:
                if isinstance(condition, dict):
                    [(name, argument)] = condition.items()
                    found.add(f"{name}/{next(iter(argument))}" if isinstance(argument, dict) else name)
    return found


def test_moto_matches_every_operator_the_deployed_patterns_use_as_eventbridge_does(guard, forwarder):
    used = set()
    for stack in (guard, forwarder):
        for pattern in deployed_patterns(stack).values():
            used |= operators(pattern)
    assert used <= set(OPERATOR_PROBES), f"add a probe for {used - set(OPERATOR_PROBES)}"
    for operator in used:
        pattern, match, miss = OPERATOR_PROBES[operator]
        matcher = EventPattern.load(json.dumps(pattern))
        assert matcher.matches_event(match) and not matcher.matches_event(miss), operator


# --------------------------------------------------------------- forwarder
def forwarder_rules(forwarder: Deployed) -> list[str]:
    rules = list(forwarder.of_type(RULE))
    assert rules
    return rules


def inline_policies(iam, role_name: str) -> list[dict]:
    names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    documents = [iam.get_role_policy(RoleName=role_name, PolicyName=n)["PolicyDocument"] for n in names]
    # moto gap: a role's inline policy from CloudFormation comes back as the
    # Python repr of the document, not as JSON.
    return [d if isinstance(d, dict) else ast.literal_eval(d) for d in documents]


def condition_values(statement: dict, key: str) -> list[str]:
    """The values a statement's conditions require of a key, whatever the operator.
    moto gap: a value that is Ref AWS::NoValue stays in the list as null, where
    CloudFormation drops it; the nulls are dropped here (see role_statements)."""
    return [v for operator in statement.get("Condition", {}).values() for v in as_list(operator.get(key, []))
            if v is not None]


def test_the_forwarder_sends_to_the_connect_regions_default_bus_with_its_role(forwarder):
    """moto gap: it forwards across Regions without assuming RoleArn, so the role is read back."""
    bus = client("events", GUARD_REGION).describe_event_bus(Name="default")["Arn"]
    iam = forwarder.client("iam")
    for rule_id in forwarder_rules(forwarder):
        [target] = deployed_targets(forwarder, rule_id)
        assert target["Arn"] == bus
        role = iam.get_role(RoleName=target["RoleArn"].rsplit("/", 1)[1])["Role"]
        [trust] = role["AssumeRolePolicyDocument"]["Statement"]
        assert (trust["Effect"], trust["Principal"], trust["Action"]) == (
            "Allow", {"Service": "events.amazonaws.com"}, "sts:AssumeRole")
        # Confused deputy (issue 12, item 5): EventBridge may assume it for this rule only.
        assert condition_values(trust, "aws:SourceArn") == [deployed_rule(forwarder, rule_id)["Arn"]]
        assert condition_values(trust, "aws:SourceAccount") == [forwarder.account]
        statements = [s for d in inline_policies(iam, role["RoleName"]) for s in as_list(d["Statement"])]
        assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements] == [("Allow", "events:PutEvents", bus)]


def test_the_forwarder_keeps_what_it_cannot_deliver(forwarder):
    """Issue 12, item 3: a dead-letter queue on every target (check_target
    shows it exists and is standard), and a retry policy where EventBridge
    takes one: an event bus target takes none and retries for 24 hours."""
    for rule_id in forwarder_rules(forwarder):
        for target in deployed_targets(forwarder, rule_id):
            assert "DeadLetterConfig" in target, f"{rule_id}: an undeliverable IAM event is dropped silently"
            if ":event-bus/" not in target["Arn"]:
                assert "RetryPolicy" in target, rule_id


def test_the_forwarder_alarms_on_failed_deliveries(forwarder):
    """Issue 12, item 3: an alarm on each forwarding rule's failures."""
    names = {forwarder.physical_id(i) for i in forwarder_rules(forwarder)}
    watched = {d["Value"] for i in forwarder.of_type("AWS::CloudWatch::Alarm")
               for d in alarm_dimensions(properties(forwarder, i)) if d["Name"] == "RuleName"}
    assert names <= watched


def test_the_forwarder_forwards_what_the_guards_iam_rule_matches(forwarder, guard):
    [rule_id] = forwarder_rules(forwarder)
    assert deployed_patterns(forwarder)[rule_id] == deployed_patterns(guard)["IamEvents"]


@pytest.mark.parametrize("filename", [s for s in SAMPLES if s.startswith(("iam-", "ignored-iam-"))])
def test_iam_samples_reach_the_guard_through_the_forwarder(forwarder, guard, emulator, filename):
    event = sample(filename)
    emulator.invocations.clear()
    response = forwarder.client("events").put_events(Entries=[bus_entry(event)])
    assert response["FailedEntryCount"] == 0
    records = work_records(guard, emulator.invocations)
    if expected_rule(filename) is None:
        assert records == []
    else:
        check_delivered(guard, records, event)


# ---------------------------------------------------------- central mode
# Issue 15: the guard in central mode (guard_central) and deploy/member.yaml
# in two member accounts (member_a_east, member_a_west, member_b_east), each
# created in its own account of the emulator.
MEMBER_ENV = {"MEMBER_ROLE_NAME", "MEMBER_ACCOUNTS", "MEMBER_EXTERNAL_ID", "SWEEP_REGIONS"}


@pytest.mark.parametrize("name", GUARD_STACKS)
def test_single_account_stacks_know_nothing_of_central_mode(request, name):
    stack = request.getfixturevalue(name)
    assert not MEMBER_ENV & set(function_configuration(stack)["Environment"]["Variables"])
    assert not {"sts:AssumeRole", "organizations:ListAccounts"} & granted_actions(stack)
    assert [b["Name"] for b in stack.client("events").list_event_buses()["EventBuses"]] == ["default"]
    assert not {"OrganizationEventBusArn", "FunctionRoleArn"} & set(stack.outputs)


def test_the_central_guard_is_told_central_mode_and_may_assume_the_audit_roles_only(guard_central, guard):
    env = function_configuration(guard_central)["Environment"]["Variables"]
    assert {k: env[k] for k in MEMBER_ENV} == {
        "MEMBER_ROLE_NAME": AUDIT_ROLE, "MEMBER_ACCOUNTS": f"{MEMBER_A},{MEMBER_B}",
        "MEMBER_EXTERNAL_ID": EXTERNAL_ID, "SWEEP_REGIONS": f"{CENTRAL_REGION},us-east-1,eu-west-2"}
    # Read back from IAM: one statement more than single-account mode, and only it.
    [statement] = [s for s in role_statements(guard_central) if "sts:AssumeRole" in as_list(s["Action"])]
    assert statement == {"Sid": "AssumeMemberRoles", "Effect": "Allow", "Action": "sts:AssumeRole",
                         "Resource": f"arn:aws:iam::*:role/{AUDIT_ROLE}"}
    assert granted_actions(guard_central) - granted_actions(guard) == {"sts:AssumeRole"}  # ids: no ListAccounts
    assert guard_central.outputs["FunctionRoleArn"] == function_configuration(guard_central)["Role"]


def test_the_organisation_bus_carries_the_guards_rules_and_admits_the_member_accounts(guard_central):
    """moto gap: it creates the bus without its Policy property; the resolved
    policy is applied with PutPermission and read back."""
    stack = guard_central
    events = stack.client("events")
    bus = events.describe_event_bus(Name=f"{stack.name}-members")
    assert bus["Arn"] == stack.outputs["OrganizationEventBusArn"]
    policy = properties(stack, "OrganizationEventBus")["Policy"]
    events.put_permission(EventBusName=bus["Name"], Policy=json.dumps(policy))
    [statement] = json.loads(events.describe_event_bus(Name=bus["Name"])["Policy"])["Statement"]
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == ("Allow", "events:PutEvents", bus["Arn"])
    assert sorted(as_list(statement["Principal"]["AWS"])) == [MEMBER_A, MEMBER_B]
    assert "Condition" not in statement
    on_bus = {i for i in stack.of_type(RULE) if rule_bus(stack, i) == bus["Name"]}
    assert on_bus == {f"Member{n}" for n in RULE_BY_PREFIX.values()} | {"MemberKmsKeyEvents"}
    for rule_id in on_bus:
        [target] = deployed_targets(stack, rule_id)
        assert target["Arn"] == work_queue_arn(stack) and target["SqsParameters"] == {"MessageGroupId": message_group(stack)}
        # Same pattern as the default bus's rule of the same kind.
        assert deployed_patterns(stack)[rule_id] == deployed_patterns(stack)[rule_id.removeprefix("Member")]


def audit_role(stack: Deployed) -> dict:
    return stack.client("iam").get_role(RoleName=AUDIT_ROLE)["Role"]


@pytest.mark.parametrize("name, conditions", [
    ("member_a_east", {"sts:ExternalId": EXTERNAL_ID}),
    ("member_b_east", {"sts:ExternalId": EXTERNAL_ID, "aws:PrincipalOrgID": ORGANIZATION_ID}),
])
def test_each_member_account_has_the_audit_role_trusted_by_the_central_role_only(request, guard_central, name, conditions):
    """moto gap: it evaluates no trust policy; the trust is read back from IAM."""
    stack = request.getfixturevalue(name)
    role = audit_role(stack)
    assert role["Arn"] == stack.outputs["AuditRoleArn"] == f"arn:aws:iam::{stack.account}:role/{AUDIT_ROLE}"
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {"Effect": "Allow", "Principal": {"AWS": guard_central.outputs["FunctionRoleArn"]},
                     "Action": "sts:AssumeRole", "Condition": {"StringEquals": conditions}}
    # Only reads, on this account's resources in any Region (IAM's and the keys' as template.yaml's).
    statements = [s for d in inline_policies(stack.client("iam"), AUDIT_ROLE) for s in as_list(d["Statement"])]
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert all(a.split(":")[1].startswith(("Get", "List", "Describe")) for a in actions), actions
    resources = {r for s in statements for r in as_list(s["Resource"])}
    assert f"arn:aws:connect:*:{stack.account}:instance/*" in resources
    assert all(r == "*" or f":{stack.account}:" in r or r == "arn:aws:kms:*:*:key/*" for r in resources), resources
    assert stack.client("iam").list_attached_role_policies(RoleName=AUDIT_ROLE)["AttachedPolicies"] == []


def test_the_audit_role_is_made_once_per_account(member_a_east, member_a_west):
    assert "AuditRole" in member_a_east.created and "AuditRole" not in member_a_west.created
    assert "AuditRoleArn" not in member_a_west.outputs
    assert audit_role(member_a_west)["Arn"] == member_a_east.outputs["AuditRoleArn"]  # IAM is global


@pytest.mark.parametrize("account", [MEMBER_A, MEMBER_B])
def test_the_role_the_function_will_assume_exists_and_acts_in_the_member_account(member_a_east, member_b_east, account):
    """The ARN the function builds, arn:<partition>:iam::<account>:role/<MEMBER_ROLE_NAME>,
    with its session name and external id. moto gap: its STS checks no trust."""
    credentials = client("sts", CENTRAL_REGION).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{AUDIT_ROLE}", RoleSessionName="connect-slr-guard",
        ExternalId=EXTERNAL_ID)["Credentials"]
    sts = boto3.client("sts", region_name=CENTRAL_REGION, aws_access_key_id=credentials["AccessKeyId"],
                       aws_secret_access_key=credentials["SecretAccessKey"], aws_session_token=credentials["SessionToken"])
    assert sts.get_caller_identity()["Arn"] == f"arn:aws:sts::{account}:assumed-role/{AUDIT_ROLE}/connect-slr-guard"
    client("iam", "us-east-1", account).get_role(RoleName=AUDIT_ROLE)


@pytest.mark.parametrize("name", MEMBER_STACKS)
def test_member_rules_forward_to_the_central_bus_with_their_role_and_dead_letter_queue(request, guard_central, name):
    """moto gap: it delivers across accounts and Regions without the role or
    the bus policy; both are read back."""
    stack = request.getfixturevalue(name)
    rules = stack.of_type(RULE)
    kinds = {"ConnectEvents", "ProfilesEvents", "KmsApiEvents", "KmsKeyEvents"}
    assert set(rules) == (kinds | {"IamEvents"} if stack.region == "us-east-1" else kinds)  # IAM's only there
    iam = stack.client("iam")
    for rule_id in rules:
        [target] = deployed_targets(stack, rule_id)
        assert target["Arn"] == guard_central.outputs["OrganizationEventBusArn"], rule_id
        assert target["RoleArn"] == ATTRIBUTES[("AWS::IAM::Role", "Arn")](stack, stack.physical_id("ForwarderRole"))
        assert target["DeadLetterConfig"]["Arn"] == queue_attributes(stack.outputs["DeadLetterQueueUrl"])["QueueArn"]
        assert deployed_rule(stack, rule_id)["Name"].startswith(f"{AUDIT_ROLE}-"), rule_id
    role = iam.get_role(RoleName=stack.physical_id("ForwarderRole"))["Role"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert sorted(condition_values(trust, "aws:SourceArn")) == sorted(deployed_rule(stack, i)["Arn"] for i in rules)
    assert condition_values(trust, "aws:SourceAccount") == [stack.account]
    statements = [s for d in inline_policies(iam, role["RoleName"]) for s in as_list(d["Statement"])]
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements] == [
        ("Allow", "events:PutEvents", guard_central.outputs["OrganizationEventBusArn"])]


@pytest.mark.parametrize("name, alarmed", [("member_a_east", True), ("member_a_west", True), ("member_b_east", False)])
def test_the_member_alarm_is_opt_in(request, name, alarmed):
    stack = request.getfixturevalue(name)
    alarms = stack.of_type("AWS::CloudWatch::Alarm")
    assert bool(alarms) == alarmed
    for logical_id in alarms:
        [topic] = alarm_actions(properties(stack, logical_id))
        assert topic.split(":")[3:5] == [stack.region, stack.account]


MEMBER_ROUTES = [(name, s) for name in MEMBER_STACKS for s in SAMPLES
                 if s.startswith(("iam-", "connect-", "profiles-", "kms-", "ignored-"))]


@pytest.mark.parametrize("name, filename", MEMBER_ROUTES)
def test_each_member_sample_reaches_the_central_function_through_the_organisation_bus(
        request, guard_central, emulator, name, filename):
    """A member's event, put on its own default bus, is forwarded to the central
    bus, matched there by the guard's rule, and arrives at the central function
    through the work queue. moto gap: a forwarded event is stamped with the
    receiving bus's account and Region, where EventBridge keeps the member's
    (the function re-queues it into <account>:<region> of the event, which
    bench/ checks); so the body's source, detail-type and detail are compared."""
    stack = request.getfixturevalue(name)
    event = sample(filename)
    emulator.invocations.clear()
    response = stack.client("events").put_events(Entries=[bus_entry(event)])
    assert response["FailedEntryCount"] == 0
    records = work_records(guard_central, emulator.invocations)
    want = expected_rule(filename)
    if want is None or (want == "IamEvents" and stack.region != "us-east-1"):
        assert records == []
    else:
        check_delivered(guard_central, records, event)
