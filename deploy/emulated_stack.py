"""Deploy a CloudFormation or SAM template into moto's CloudFormation (in
process, under `moto.mock_aws`) and resolve the template's intrinsics against
what the emulator created. Used by deploy/test_emulator_deploy.py.

The resolver here is independent of moto's: Ref and Fn::GetAtt are answered
from the stack's physical ids and from the services' own describe calls, and
conditions are evaluated from the parameters. So a value moto resolved
wrongly, or a Ref that points at a resource that was never created, shows up
as a mismatch or an Unresolved error instead of passing unseen.

A stack may live in another account of the emulator: deploy() takes a boto3
session whose credentials act there (moto's STS AssumeRole into that
account), and every call about the stack uses it.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import boto3
from cfnlint.decode import decode
from samtranslator.translator.transform import transform

NO_VALUE = object()  # what Ref AWS::NoValue resolves to: the key is dropped


class Unresolved(Exception):
    """An intrinsic that does not resolve against the deployed stack."""


def load_template(path: Path) -> dict:
    """The template as plain dicts, intrinsics as {"Ref": ...}/{"Fn::...": ...}."""
    template, problems = decode(str(path))
    assert not problems, [str(p) for p in problems]
    return json.loads(json.dumps(template))


class NoManagedPolicies:
    """ManagedPolicyLoader stand-in: the guard names no AWS managed policy, so
    the translator must never need the IAM list (which it would fetch online)."""

    def load(self) -> dict[str, str]:
        raise AssertionError("the template names an AWS managed policy; the offline transform cannot resolve it")


def transform_sam(template: dict, code_bucket: str, code_key: str) -> dict:
    """The CloudFormation that `sam deploy` would submit, with every function's
    code in s3://code_bucket/code_key (the build output is not needed here)."""
    template = json.loads(json.dumps(template))
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = {"Bucket": code_bucket, "Key": code_key}
    return transform(template, {}, NoManagedPolicies())


def placeholder_zip() -> bytes:
    """A fixed (byte-for-byte reproducible) deployment package."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o755 << 16
        archive.writestr(info, "#!/bin/sh\n")
    return buffer.getvalue()


def upload_code(region: str, bucket: str, key: str) -> None:
    s3 = boto3.client("s3", region_name=region)
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **location)
    s3.put_object(Bucket=bucket, Key=key, Body=placeholder_zip())


def _queue_attribute(name: str) -> Callable[[Deployed, str], str]:
    return lambda stack, url: stack.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[name])[
        "Attributes"][name]


def _queue_name(stack: Deployed, url: str) -> str:
    name = url.rsplit("/", 1)[1]
    if stack.client("sqs").get_queue_url(QueueName=name)["QueueUrl"] != url:
        raise Unresolved(f"{url}: no queue named {name}")
    return name


def _key_arn(stack: Deployed, key_id: str) -> str:
    # Not DescribeKey: moto 5.2.5 keeps a CloudFormation key's KeyPolicy as an
    # object, and DescribeKey on that key then fails with a TypeError.
    keys = stack.client("kms").list_keys()["Keys"]
    return next(k["KeyArn"] for k in keys if k["KeyId"] == key_id)


# (resource type, attribute) -> how to read it from the service, given the
# stack and the resource's physical id. What the templates use (and the
# function's ARN); a new Fn::GetAtt fails with Unresolved until it is added.
ATTRIBUTES: dict[tuple[str, str], Callable[[Deployed, str], Any]] = {
    ("AWS::SQS::Queue", "Arn"): _queue_attribute("QueueArn"),
    ("AWS::SQS::Queue", "QueueName"): _queue_name,
    ("AWS::Events::Rule", "Arn"): lambda stack, name: stack.client("events").describe_rule(
        Name=name.rsplit("|", 1)[-1], EventBusName=name.rsplit("|", 1)[0] if "|" in name else "default")["Arn"],
    ("AWS::Events::EventBus", "Arn"): lambda stack, name: stack.client("events").describe_event_bus(Name=name)["Arn"],
    ("AWS::IAM::Role", "Arn"): lambda stack, name: stack.client("iam").get_role(RoleName=name)["Role"]["Arn"],
    ("AWS::Logs::LogGroup", "Arn"): lambda stack, name: next(
        g["arn"] for g in stack.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        if g["logGroupName"] == name),
    ("AWS::KMS::Key", "Arn"): _key_arn,
    ("AWS::Lambda::Function", "Arn"): lambda stack, name: stack.client("lambda").get_function(FunctionName=name)[
        "Configuration"]["FunctionArn"],
    ("AWS::DynamoDB::Table", "Arn"): lambda stack, name: stack.client("dynamodb").describe_table(TableName=name)[
        "Table"]["TableArn"],
}


@dataclass
class Deployed:
    """One stack as the emulator created it."""

    name: str
    region: str
    template: dict  # as submitted (for a SAM template: after the transform)
    overrides: dict[str, str] = field(default_factory=dict)
    session: boto3.Session | None = None  # None: the emulator's default account
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _conditions: dict[str, bool] = field(default_factory=dict, repr=False)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = (self.session or boto3).client(service, region_name=self.region)
        return self._clients[service]

    # ------------------------------------------------------------- stack state
    @cached_property
    def description(self) -> dict:
        return self.client("cloudformation").describe_stacks(StackName=self.name)["Stacks"][0]

    @cached_property
    def account(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]

    @cached_property
    def created(self) -> dict[str, dict]:
        """Logical id -> stack resource summary, for the resources the emulator lists by name."""
        paginator = self.client("cloudformation").get_paginator("list_stack_resources")
        summaries = [s for page in paginator.paginate(StackName=self.name) for s in page["StackResourceSummaries"]]
        return {s["LogicalResourceId"]: s for s in summaries if s.get("LogicalResourceId")}

    @cached_property
    def outputs(self) -> dict[str, str]:
        return {o["OutputKey"]: o["OutputValue"] for o in self.description.get("Outputs", [])}

    @cached_property
    def parameters(self) -> dict[str, str]:
        """Every parameter's effective value: the override, else the default."""
        declared = self.template.get("Parameters", {})
        values = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
        values.update(self.overrides)
        missing = set(declared) - set(values)
        assert not missing, f"no value for parameters {sorted(missing)}"
        return values

    def expected(self) -> dict[str, dict]:
        """Logical id -> resource, for every resource whose Condition holds."""
        return {lid: r for lid, r in self.template["Resources"].items()
                if "Condition" not in r or self.condition(r["Condition"])}

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return {lid: r for lid, r in self.expected().items() if r["Type"] == resource_type}

    def physical_id(self, logical_id: str) -> str:
        if logical_id not in self.created:
            raise Unresolved(f"{logical_id}: not created in the emulator")
        return self.created[logical_id]["PhysicalResourceId"]

    # --------------------------------------------------------------- resolving
    def pseudo(self, name: str) -> Any:
        return {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.name,
            "AWS::StackId": self.description["StackId"],
            "AWS::NoValue": NO_VALUE,
        }[name]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name not in self.template.get("Resources", {}):
            raise Unresolved(f"Ref {name}: neither a parameter nor a resource")
        if name not in self.expected():
            raise Unresolved(f"Ref {name}: its Condition is false, so it is not created")
        resource = self.template["Resources"][name]
        bus = resource.get("Properties", {}).get("EventBusName")
        if resource["Type"] == "AWS::Events::Rule" and bus is not None and self.resolve(bus) != "default":
            # moto gap: its Ref of a rule on a custom bus is the rule's name;
            # CloudFormation's is "<bus>|<rule>" (cloudformation-coverage-roadmap
            # issues 1131 and 1949). The physical id is moto's, the form CloudFormation's.
            return f"{self.resolve(bus)}|{self.physical_id(name)}"
        return self.physical_id(name)

    def attribute(self, logical_id: str, attribute: str) -> Any:
        resource = self.template["Resources"].get(logical_id)
        if resource is None:
            raise Unresolved(f"Fn::GetAtt {logical_id}.{attribute}: no such resource")
        reader = ATTRIBUTES.get((resource["Type"], attribute))
        if reader is None:
            raise Unresolved(f"Fn::GetAtt {logical_id}.{attribute}: no reader for {resource['Type']} in ATTRIBUTES")
        value = reader(self, self.ref(logical_id))
        if not value:
            raise Unresolved(f"Fn::GetAtt {logical_id}.{attribute}: the emulator has no value")
        return value

    def sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def value(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return str(self.attribute(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", value, text)

    def resolve(self, node: Any) -> Any:
        """The value CloudFormation would pass for a template node."""
        if isinstance(node, list):
            return [v for v in map(self.resolve, node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            [(key, argument)] = node.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.attribute(logical_id, attribute)
            if key == "Fn::Sub":
                return self.sub(argument)
            if key == "Fn::If":
                name, yes, no = argument
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Join":
                separator, items = argument
                return separator.join(str(i) for i in self.resolve(items))
            if key == "Fn::Split":
                separator, source = argument
                return str(self.resolve(source)).split(separator)
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if key.startswith("Fn::"):
                raise Unresolved(f"{key}: not supported by this resolver")
        resolved = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def taken_intrinsics(self, node: Any) -> list[dict]:
        """Every Ref / Fn::GetAtt / Fn::Sub in a fragment, on the branches its Fn::Ifs take."""
        if isinstance(node, list):
            return [found for item in node for found in self.taken_intrinsics(item)]
        if not isinstance(node, dict):
            return []
        if len(node) == 1 and next(iter(node)) in ("Ref", "Fn::GetAtt", "Fn::Sub"):
            return [node]
        if len(node) == 1 and next(iter(node)) == "Fn::If":
            name, yes, no = node["Fn::If"]
            return self.taken_intrinsics(yes if self.condition(name) else no)
        return [found for value in node.values() for found in self.taken_intrinsics(value)]

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self.evaluate(self.template["Conditions"][name])
        return self._conditions[name]

    def evaluate(self, node: dict) -> bool:
        [(key, argument)] = node.items()
        if key == "Condition":
            return self.condition(argument)
        if key == "Fn::Equals":
            left, right = (str(self.resolve(a)) for a in argument)
            return left == right
        if key == "Fn::Not":
            return not self.evaluate(argument[0])
        if key == "Fn::And":
            return all(self.evaluate(a) for a in argument)
        if key == "Fn::Or":
            return any(self.evaluate(a) for a in argument)
        raise Unresolved(f"condition function {key}: not supported by this resolver")


def deploy(name: str, region: str, template: dict, parameters: dict[str, str] | None = None,
           session: boto3.Session | None = None) -> Deployed:
    """Create the stack (in the session's account, else the default one) and
    wait for it; fails unless it reaches CREATE_COMPLETE."""
    cloudformation = (session or boto3).client("cloudformation", region_name=region)
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    stack = Deployed(name, region, template, dict(parameters or {}), session)
    status = stack.description["StackStatus"]
    assert status == "CREATE_COMPLETE", f"{name}: {status} {stack.description.get('StackStatusReason', '')}"
    return stack
