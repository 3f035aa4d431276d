#!/usr/bin/env python3
"""Probe how moto server behaves for the IAM / KMS / SNS->SQS calls that
connect-slr-guard's end-to-end tests rely on. Prints one line per finding.

  .venv/bin/python bench/moto_probe.py                 # starts its own moto server
  .venv/bin/python bench/moto_probe.py --endpoint URL  # use a running one

When it starts moto itself it sets MOTO_IAM_LOAD_MANAGED_POLICIES=true and
runs `python -m moto.server -p <free port>` on 127.0.0.1. Findings are written
up in bench/MOTO-NOTES.md; rerun this after a moto upgrade and compare.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import boto3
from botocore.exceptions import ClientError

REGION = "eu-west-2"
SLR_POLICY_ARN = "arn:aws:iam::aws:policy/aws-service-role/AmazonConnectServiceLinkedRolePolicy"


def out(section, what, value):
    if not isinstance(value, str):
        value = json.dumps(value, default=str, sort_keys=True)
    print(f"[{section}] {what}: {value}", flush=True)


def err(e):
    if isinstance(e, ClientError):
        r = e.response
        return f"ClientError {r['Error'].get('Code')} ({r['ResponseMetadata']['HTTPStatusCode']}): {r['Error'].get('Message')}"
    return f"{type(e).__name__}: {e}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto():
    port = free_port()
    env = dict(os.environ, MOTO_IAM_LOAD_MANAGED_POLICIES="true")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except Exception:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("moto server did not come up")


class RawCapture:
    """Keeps the raw HTTP body of the last response of each operation."""

    def __init__(self):
        self.bodies = {}

    def __call__(self, operation_model=None, response_dict=None, **kwargs):
        if operation_model is not None and response_dict is not None:
            self.bodies[operation_model.name] = response_dict.get("body", b"")


def clients(url):
    kw = dict(endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
              aws_secret_access_key="testing")
    cap = RawCapture()
    c = {name: boto3.client(name, **kw) for name in ("iam", "kms", "sns", "sqs", "sts")}
    for client in c.values():
        client.meta.events.register("before-parse", cap)
    return c, cap


def probe_iam(c, cap):
    iam = c["iam"]
    s = "iam"
    slr_name = None
    try:
        r = iam.create_service_linked_role(AWSServiceName="connect.amazonaws.com", CustomSuffix="probe1")["Role"]
        slr_name = r["RoleName"]
        out(s, "create_service_linked_role(connect, CustomSuffix=probe1) RoleName", r["RoleName"])
        out(s, "  Path", r["Path"])
        out(s, "  Arn", r["Arn"])
        out(s, "  AssumeRolePolicyDocument (boto3-decoded)", r.get("AssumeRolePolicyDocument"))
        raw = cap.bodies.get("CreateServiceLinkedRole", b"").decode()
        out(s, "  raw <AssumeRolePolicyDocument> on the wire",
            raw.split("<AssumeRolePolicyDocument>")[1].split("</AssumeRolePolicyDocument>")[0]
            if "<AssumeRolePolicyDocument>" in raw else "(absent)")
        att = iam.list_attached_role_policies(RoleName=r["RoleName"])["AttachedPolicies"]
        out(s, "  attached managed policies right after creation", att)
        inline = iam.list_role_policies(RoleName=r["RoleName"])["PolicyNames"]
        out(s, "  inline policies right after creation", inline)
        role = iam.get_role(RoleName=r["RoleName"])["Role"]
        out(s, "  get_role Description / MaxSessionDuration / RoleLastUsed",
            [role.get("Description"), role.get("MaxSessionDuration"), role.get("RoleLastUsed")])
    except Exception as e:
        out(s, "create_service_linked_role(connect, CustomSuffix)", err(e))

    try:
        r = iam.create_service_linked_role(AWSServiceName="connect.amazonaws.com")["Role"]
        out(s, "create_service_linked_role(connect) without CustomSuffix RoleName", r["RoleName"])
    except Exception as e:
        out(s, "create_service_linked_role(connect) without CustomSuffix", err(e))

    try:
        iam.create_service_linked_role(AWSServiceName="connect.amazonaws.com", CustomSuffix="probe1")
        out(s, "create_service_linked_role same suffix twice", "accepted (no error)")
    except Exception as e:
        out(s, "create_service_linked_role same suffix twice", err(e))

    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "connect.amazonaws.com"},
                       "Action": "sts:AssumeRole"}],
    }
    name = "AWSServiceRoleForAmazonConnect_manual"
    try:
        r = iam.create_role(RoleName=name, Path="/aws-service-role/connect.amazonaws.com/",
                            AssumeRolePolicyDocument=json.dumps(trust))["Role"]
        out(s, "create_role(Path=/aws-service-role/connect.amazonaws.com/)", f"accepted, Arn={r['Arn']}")
    except Exception as e:
        out(s, "create_role(Path=/aws-service-role/connect.amazonaws.com/)", err(e))

    try:
        pol = iam.get_policy(PolicyArn=SLR_POLICY_ARN)["Policy"]
        out(s, "get_policy(AmazonConnectServiceLinkedRolePolicy)",
            f"exists, Path={pol['Path']} DefaultVersionId={pol['DefaultVersionId']}")
    except Exception as e:
        out(s, "get_policy(AmazonConnectServiceLinkedRolePolicy)", err(e))
    try:
        iam.attach_role_policy(RoleName=name, PolicyArn=SLR_POLICY_ARN)
        att = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        out(s, "attach_role_policy(AmazonConnectServiceLinkedRolePolicy)", f"ok, attached={att}")
    except Exception as e:
        out(s, "attach_role_policy(AmazonConnectServiceLinkedRolePolicy)", err(e))

    doc = {"Version": "2012-10-17",
           "Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
                          "Condition": {"StringEquals": {"kms:ViaService": "connect.eu-west-2.amazonaws.com"}}}]}
    try:
        iam.put_role_policy(RoleName=name, PolicyName="inline-probe", PolicyDocument=json.dumps(doc))
        got = iam.get_role_policy(RoleName=name, PolicyName="inline-probe")
        raw = cap.bodies["GetRolePolicy"].decode()
        wire = raw.split("<PolicyDocument>")[1].split("</PolicyDocument>")[0]
        out(s, "get_role_policy raw <PolicyDocument> on the wire", wire)
        out(s, "  looks URL-encoded", "%7B" in wire or "%22" in wire)
        out(s, "  boto3 (after its urldecode+json hook) gives", type(got["PolicyDocument"]).__name__)
        raw_role = None
        iam.get_role(RoleName=name)
        raw_role = cap.bodies["GetRole"].decode()
        wire = raw_role.split("<AssumeRolePolicyDocument>")[1].split("</AssumeRolePolicyDocument>")[0]
        out(s, "get_role raw <AssumeRolePolicyDocument> on the wire", wire)
    except Exception as e:
        out(s, "put/get_role_policy", err(e))

    try:
        roles = iam.list_roles(PathPrefix="/aws-service-role/connect.amazonaws.com/")["Roles"]
        out(s, "list_roles(PathPrefix=/aws-service-role/connect.amazonaws.com/)", [r["RoleName"] for r in roles])
    except Exception as e:
        out(s, "list_roles(PathPrefix)", err(e))

    try:
        iam.delete_role(RoleName=name)
        out(s, "delete_role on a role with an attached managed + inline policy", "accepted (no DeleteConflict)")
    except Exception as e:
        out(s, "delete_role on a role with an attached managed + inline policy", err(e))

    if not slr_name:
        return
    try:
        task = iam.delete_service_linked_role(RoleName=slr_name)["DeletionTaskId"]
        out(s, "delete_service_linked_role DeletionTaskId", task)
        st = iam.get_service_linked_role_deletion_status(DeletionTaskId=task)
        out(s, "  get_service_linked_role_deletion_status", st.get("Status"))
        st = iam.get_service_linked_role_deletion_status(
            DeletionTaskId="task/aws-service-role/connect.amazonaws.com/x/00000000-0000-0000-0000-000000000000")
        out(s, "  get_service_linked_role_deletion_status(made-up task id)", st.get("Status"))
        try:
            iam.get_role(RoleName=slr_name)
            out(s, "  role after delete_service_linked_role", "still exists")
        except ClientError as e:
            out(s, "  role after delete_service_linked_role", err(e))
    except Exception as e:
        out(s, "delete_service_linked_role", err(e))


def probe_kms(c, cap):
    kms = c["kms"]
    s = "kms"
    account = c["sts"].get_caller_identity()["Account"]
    out("sts", "get_caller_identity Account", account)
    grantee = f"arn:aws:iam::{account}:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_probe"
    try:
        meta = kms.create_key(Description="probe", Tags=[{"TagKey": "app", "TagValue": "connect"}])["KeyMetadata"]
        key = meta["KeyId"]
        out(s, "create_key KeyState / KeySpec / KeyManager", [meta["KeyState"], meta.get("KeySpec"), meta.get("KeyManager")])
        g = kms.create_grant(KeyId=meta["Arn"], GranteePrincipal=grantee,
                             Operations=["Decrypt", "GenerateDataKey", "DescribeKey"],
                             Name="connect-probe-grant")
        out(s, "create_grant returns", sorted(g.keys() - {"ResponseMetadata"}))
        grants = kms.list_grants(KeyId=key)["Grants"]
        out(s, "list_grants count", len(grants))
        gr = grants[0]
        out(s, "list_grants[0] members", sorted(gr))
        out(s, "list_grants[0] GranteePrincipal", gr.get("GranteePrincipal"))
        out(s, "list_grants[0] Operations", gr.get("Operations"))
        out(s, "list_grants[0] KeyId (id or ARN?)", gr.get("KeyId"))
        out(s, "list_grants[0] IssuingAccount / CreationDate type",
            [gr.get("IssuingAccount"), type(gr.get("CreationDate")).__name__])
        try:
            f = kms.list_grants(KeyId=key, GranteePrincipal=grantee)["Grants"]
            out(s, "list_grants(GranteePrincipal=...) filter", f"{len(f)} grant(s)")
            f = kms.list_grants(KeyId=key, GranteePrincipal="arn:aws:iam::111111111111:role/other")["Grants"]
            out(s, "list_grants(GranteePrincipal=other) filter", f"{len(f)} grant(s)")
        except Exception as e:
            out(s, "list_grants(GranteePrincipal=...)", err(e))
        kms.revoke_grant(KeyId=key, GrantId=g["GrantId"])
        out(s, "revoke_grant then list_grants count", len(kms.list_grants(KeyId=key)["Grants"]))
        try:
            kms.revoke_grant(KeyId=key, GrantId=g["GrantId"])
            out(s, "revoke_grant twice", "accepted (no error)")
        except Exception as e:
            out(s, "revoke_grant twice", err(e))

        kms.disable_key(KeyId=key)
        out(s, "disable_key -> describe_key KeyState / Enabled",
            [kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"], kms.describe_key(KeyId=key)["KeyMetadata"]["Enabled"]])
        try:
            kms.create_grant(KeyId=key, GranteePrincipal=grantee, Operations=["Decrypt"])
            out(s, "create_grant on a Disabled key", "accepted")
        except Exception as e:
            out(s, "create_grant on a Disabled key", err(e))
        d = kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        md = kms.describe_key(KeyId=key)["KeyMetadata"]
        out(s, "schedule_key_deletion returns", sorted(d.keys() - {"ResponseMetadata"}))
        out(s, "schedule_key_deletion -> describe_key KeyState / DeletionDate",
            [md["KeyState"], str(md.get("DeletionDate"))])
        try:
            kms.encrypt(KeyId=key, Plaintext=b"x")
            out(s, "encrypt with PendingDeletion key", "accepted")
        except Exception as e:
            out(s, "encrypt with PendingDeletion key", err(e))
        kms.cancel_key_deletion(KeyId=key)
        out(s, "cancel_key_deletion -> KeyState", kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"])

        key2 = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.schedule_key_deletion(KeyId=key2, PendingWindowInDays=7)
        out(s, "schedule_key_deletion on an Enabled key -> KeyState",
            kms.describe_key(KeyId=key2)["KeyMetadata"]["KeyState"])
        try:
            kms.describe_key(KeyId="00000000-0000-0000-0000-000000000000")
        except Exception as e:
            out(s, "describe_key unknown key", err(e))
    except Exception as e:
        out(s, "flow failed", err(e))


def probe_sns_sqs(c, cap):
    sns, sqs = c["sns"], c["sqs"]
    s = "sns->sqs"
    try:
        topic = sns.create_topic(Name="slr-guard-alerts")["TopicArn"]
        results = {}
        for raw_flag in ("false", "true"):
            qurl = sqs.create_queue(QueueName=f"alerts-raw-{raw_flag}")["QueueUrl"]
            qarn = sqs.get_queue_attributes(QueueUrl=qurl, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn,
                                Attributes={"RawMessageDelivery": raw_flag}, ReturnSubscriptionArn=True)
            results[raw_flag] = (qurl, sub["SubscriptionArn"])
        msg = {"default": "default text", "sqs": json.dumps({"kind": "slr-deleted", "role": "AWSServiceRoleForAmazonConnect_x"})}
        pub = sns.publish(TopicArn=topic, MessageStructure="json", Message=json.dumps(msg),
                          Subject="connect-slr-guard",
                          MessageAttributes={"severity": {"DataType": "String", "StringValue": "HIGH"},
                                             "count": {"DataType": "Number", "StringValue": "3"}})
        out(s, "publish(MessageStructure=json) MessageId present", "MessageId" in pub)
        for raw_flag, (qurl, _) in results.items():
            got = sqs.receive_message(QueueUrl=qurl, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                      MessageAttributeNames=["All"], AttributeNames=["All"])
            msgs = got.get("Messages", [])
            out(s, f"RawMessageDelivery={raw_flag}: messages received", len(msgs))
            if not msgs:
                continue
            m = msgs[0]
            body = m["Body"]
            out(s, f"RawMessageDelivery={raw_flag}: SQS Body", body)
            out(s, f"RawMessageDelivery={raw_flag}: SQS-level MessageAttributes", m.get("MessageAttributes"))
            try:
                env = json.loads(body)
            except ValueError:
                env = None
            if isinstance(env, dict) and "Type" in env:
                out(s, f"RawMessageDelivery={raw_flag}: envelope keys", sorted(env))
                out(s, f"RawMessageDelivery={raw_flag}: envelope Message (sqs key selected?)", env.get("Message"))
                out(s, f"RawMessageDelivery={raw_flag}: envelope MessageAttributes", env.get("MessageAttributes"))
                out(s, f"RawMessageDelivery={raw_flag}: envelope Subject", env.get("Subject"))
    except Exception as e:
        out(s, "flow failed", err(e))


def probe_reset(c, url):
    s = "reset"
    before = len(c["iam"].list_roles()["Roles"])
    req = urllib.request.Request(url + "/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10) as resp:
        out(s, "POST /moto-api/reset status / body", [resp.status, resp.read().decode()[:200]])
    after_roles = len(c["iam"].list_roles()["Roles"])
    after_keys = len(c["kms"].list_keys()["Keys"])
    after_topics = len(c["sns"].list_topics()["Topics"])
    after_queues = len(c["sqs"].list_queues().get("QueueUrls", []))
    out(s, "roles before -> after; keys, topics, queues after", [before, after_roles, after_keys, after_topics, after_queues])
    try:
        c["iam"].get_policy(PolicyArn=SLR_POLICY_ARN)
        out(s, "AWS managed policy still there after reset", True)
    except Exception as e:
        out(s, "AWS managed policy after reset", err(e))


def probe_managed_policies_off():
    """attach_role_policy with an AWS managed policy when moto did not load them."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MOTO_IAM_LOAD_MANAGED_POLICIES"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except Exception:
                time.sleep(0.2)
        iam = boto3.client("iam", endpoint_url=url, region_name=REGION,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")
        try:
            iam.attach_role_policy(RoleName="r", PolicyArn=SLR_POLICY_ARN)
            out("iam", "without MOTO_IAM_LOAD_MANAGED_POLICIES: attach AmazonConnectServiceLinkedRolePolicy", "accepted")
        except Exception as e:
            out("iam", "without MOTO_IAM_LOAD_MANAGED_POLICIES: attach AmazonConnectServiceLinkedRolePolicy", err(e))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", help="URL of a running moto server (default: start one)")
    args = ap.parse_args()
    proc = None
    url = args.endpoint
    if not url:
        proc, url = start_moto()
    try:
        import moto
        out("env", "moto / boto3 versions", [moto.__version__, boto3.__version__])
        c, cap = clients(url)
        probe_iam(c, cap)
        probe_kms(c, cap)
        probe_sns_sqs(c, cap)
        probe_reset(c, url)
        if proc:
            probe_managed_policies_off()
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
