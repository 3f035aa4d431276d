"""Named account states for the local bench: a healthy account and one
drifted state per rule in the catalogue, each with the alerts it must raise.
Seeds moto (IAM, KMS, SNS, SQS) and the Connect/Customer Profiles test
double; the faults a scenario needs are for bench/fault_proxy.py.

The healthy account is defined here once (`Spec()`), for every Python user
of the bench.

    python bench/scenarios.py --list
    python bench/scenarios.py key-disabled --moto http://127.0.0.1:P --double http://127.0.0.1:Q
"""

import argparse
import copy
import json
import sys
import zlib
from dataclasses import dataclass, field

from local_aws import ACCOUNT, REGION, http_json

INSTANCE_ID = "11111111-2222-3333-4444-555555555555"
OTHER_INSTANCE_ID = "22222222-3333-4444-5555-666666666666"
SLR_PATH = "/aws-service-role/connect.amazonaws.com/"
ROLE_NAME = "AWSServiceRoleForAmazonConnect_AbCdEf123456"
MANAGED_POLICY = "arn:aws:iam::aws:policy/aws-service-role/AmazonConnectServiceLinkedRolePolicy"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/acme-ctr"
TOPIC_NAME = "connect-slr-guard-alerts"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:{TOPIC_NAME}"
QUEUE_NAME = "on-call"
# The key id the sample events in events/ name; replaced by a seeded key's id.
EVENT_KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
EVENT_DOMAIN = "amazon-connect-acme"

CONNECT_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "connect.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
STREAM_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Action": ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStream"],
        "Resource": STREAM_ARN,
    }],
}


def instance_arn(instance_id):
    return f"arn:aws:connect:{REGION}:{ACCOUNT}:instance/{instance_id}"


def role_arn(name, path=SLR_PATH):
    return f"arn:aws:iam::{ACCOUNT}:role{path}{name}"


def domain_arn(name):
    return f"arn:aws:profile:{REGION}:{ACCOUNT}:domains/{name}"


ROLE_ARN = role_arn(ROLE_NAME)
CTR_STREAM = {"AssociationId": "ctr-1", "StorageType": "KINESIS_STREAM", "KinesisStreamConfig": {"StreamArn": STREAM_ARN}}


@dataclass
class Spec:
    """The desired account state; drifts edit a healthy copy."""
    role_exists: bool = True
    role_path: str = SLR_PATH
    trust: dict = field(default_factory=lambda: copy.deepcopy(CONNECT_TRUST))
    managed_policy: bool = True
    inline: dict = field(default_factory=lambda: {"ConnectKinesisStream": STREAM_POLICY})
    service_role: str | None = ROLE_ARN
    domain: str = EVENT_DOMAIN
    domain_grant_ops: list | None = field(default_factory=lambda: ["Decrypt", "GenerateDataKey"])
    storage_grant: bool = True
    domain_key_state: str = "Enabled"
    domain_key_denies: list | None = None  # KMS operations the domain key's policy denies everyone
    stream_key: bool = False  # the CTR stream encrypted with its own customer key, not granted to the SLR
    storage_key_state: str = "Enabled"
    extra_domains: list = field(default_factory=list)
    second_instance: bool = False


@dataclass
class Seeded:
    domain_key: str
    storage_key: str
    queue_url: str
    stream_key: str | None = None  # the CTR stream's key, when the spec encrypts it

    def key_arn(self, which):
        return {"domain": self.domain_key, "storage": self.storage_key, "stream": self.stream_key}[which]


@dataclass
class Scenario:
    name: str
    drift: object  # callable(Spec) -> None
    event: str  # file in events/ to replay
    # Expected alerts as (rule, instance, resource); resources may be
    # "{domain_key}" / "{storage_key}" placeholders resolved after seeding.
    expect: list
    remediation: str = ""  # how the alerts' remediation starts; {resource} is the alert's resource
    faults: dict = field(default_factory=dict)  # for bench/fault_proxy.py (its PUT /_faults document)
    event_key: str = "domain"  # which seeded key the event names
    event_domain: str = EVENT_DOMAIN
    event_instance: str = INSTANCE_ID
    sweep_expect: list | None = None  # when a sweep sees more than the event

    def resolve(self, seeded, sweep=False):
        rows = self.sweep_expect if (sweep and self.sweep_expect is not None) else self.expect
        subst = {"{domain_key}": seeded.domain_key, "{storage_key}": seeded.storage_key,
                 "{stream_key}": seeded.stream_key}
        return sorted_alerts((rule, inst, subst.get(res, res)) for rule, inst, res in rows)


def sorted_alerts(rows):
    """(rule, instance, resource) rows in a stable order; instance may be None."""
    return sorted(rows, key=lambda row: tuple(part or "" for part in row))


I1 = instance_arn(INSTANCE_ID)


def _set(**changes):
    def drift(spec):
        for name, value in changes.items():
            setattr(spec, name, value)
    return drift


def _trust_extra_account(spec):
    spec.trust["Statement"].append(
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "sts:AssumeRole"})


def _deny(instance_id):
    """Connect and Customer Profiles answer AccessDenied to every request that names the instance."""
    rule = {"mode": "deny", "match": instance_id}
    return {"connect": rule, "profile": rule}


I2 = instance_arn(OTHER_INSTANCE_ID)
GRANT_FIX = "aws kms create-grant --key-id {resource}"

SCENARIOS = {s.name: s for s in [
    Scenario("healthy", _set(), "connect-update-instance-attribute.json", []),
    Scenario("slr-deleted", _set(role_exists=False), "iam-delete-service-linked-role.json",
             [("CONNECT_SLR_MISSING", I1, ROLE_ARN)],
             "aws iam create-service-linked-role --aws-service-name connect.amazonaws.com --custom-suffix "
             + ROLE_NAME.split("_")[1]),
    Scenario("slr-never-created", _set(role_exists=False, service_role=None), "connect-create-instance.json",
             [("CONNECT_SLR_NOT_CONFIGURED", I1, I1)],
             "aws iam create-service-linked-role --aws-service-name connect.amazonaws.com"),
    Scenario("slr-not-service-linked", _set(role_path="/"), "iam-delete-role.json",
             [("CONNECT_SLR_NOT_SERVICE_LINKED", I1, role_arn(ROLE_NAME, path="/"))],
             f"aws iam delete-role --role-name {ROLE_NAME}"),
    Scenario("trust-drift", _trust_extra_account, "iam-update-assume-role-policy.json",
             [("CONNECT_SLR_TRUST_DRIFT", I1, ROLE_ARN)], f"aws iam update-assume-role-policy --role-name {ROLE_NAME}"),
    Scenario("policy-detached", _set(managed_policy=False), "iam-detach-role-policy.json",
             [("CONNECT_SLR_POLICY_DETACHED", I1, ROLE_ARN)], f"aws iam attach-role-policy --role-name {ROLE_NAME}"),
    Scenario("stream-permission-missing", _set(inline={}), "iam-delete-role-policy.json",
             [("CONNECT_SLR_FEATURE_PERMISSION_MISSING", I1, STREAM_ARN)],
             f"aws connect update-instance-storage-config --instance-id {INSTANCE_ID} "
             f"--association-id {CTR_STREAM['AssociationId']}"),
    Scenario("domain-access-missing", _set(domain="acme-profiles"), "profiles-put-integration.json",
             [("PROFILES_DOMAIN_ACCESS_MISSING", I1, domain_arn("acme-profiles"))],
             "aws customer-profiles put-integration --domain-name acme-profiles", event_domain="acme-profiles"),
    Scenario("profiles-grant-missing", _set(domain_grant_ops=None), "kms-revoke-grant.json",
             [("PROFILES_KMS_GRANT_MISSING", I1, "{domain_key}")], GRANT_FIX),
    Scenario("profiles-grant-incomplete", _set(domain_grant_ops=["Decrypt"]), "kms-create-grant.json",
             [("PROFILES_KMS_GRANT_INCOMPLETE", I1, "{domain_key}")], GRANT_FIX),
    Scenario("storage-grant-missing", _set(storage_grant=False), "kms-revoke-grant.json",
             [("STORAGE_KMS_GRANT_MISSING", I1, "{storage_key}")], GRANT_FIX, event_key="storage"),
    Scenario("key-disabled", _set(domain_key_state="Disabled"), "kms-disable-key.json",
             [("KMS_KEY_UNUSABLE", I1, "{domain_key}")], "aws kms "),
    Scenario("key-pending-deletion", _set(storage_key_state="PendingDeletion"), "kms-schedule-key-deletion.json",
             [("KMS_KEY_UNUSABLE", I1, "{storage_key}")], "aws kms ", event_key="storage"),
    Scenario("second-connect-domain", _set(extra_domains=["amazon-connect-other"]), "profiles-create-domain.json",
             [("PROFILES_CROSS_DOMAIN_EXPOSURE", None, domain_arn("amazon-connect-other"))],
             "if the domain is unused: aws customer-profiles delete-domain", event_domain="amazon-connect-other"),
    Scenario("access-denied-one-instance", _set(second_instance=True), "connect-update-instance-attribute.json",
             [("CHECK_INCOMPLETE", I2, I2)], "fix the cause above", faults=_deny(OTHER_INSTANCE_ID),
             event_instance=OTHER_INSTANCE_ID, sweep_expect=[("CHECK_INCOMPLETE", I2, I2)]),
    Scenario("stream-key-grant-missing", _set(stream_key=True), "kms-revoke-grant.json",
             [("STORAGE_KMS_GRANT_MISSING", I1, "{stream_key}")], GRANT_FIX, event_key="stream"),
    Scenario("key-policy-denies", _set(domain_key_denies=["Decrypt"]), "kms-put-key-policy.json",
             [("KMS_KEY_POLICY_DENIES", I1, "{domain_key}")], "aws kms get-key-policy --key-id {resource}"),
    # DeleteServiceLinkedRole only starts a task: the role is still there.
    Scenario("slr-deletion-pending", _set(), "iam-delete-service-linked-role.json",
             [("CONNECT_SLR_MISSING", I1, ROLE_ARN)],
             "aws iam create-service-linked-role --aws-service-name connect.amazonaws.com --custom-suffix "
             + ROLE_NAME.split("_")[1], sweep_expect=[]),
    # A targeted pass that cannot rule an instance out reports it, never silence.
    Scenario("key-event-storage-unreadable", _set(storage_key_state="Disabled"), "kms-disable-key.json",
             [("CHECK_INCOMPLETE", I1, I1)], "fix the cause above", event_key="storage",
             faults={"connect": {"mode": "throttle", "match": "/storage-configs"}}),
    Scenario("grant-event-profiles-down", _set(domain_grant_ops=None), "kms-revoke-grant.json",
             [("CHECK_INCOMPLETE", I1, I1)], "fix the cause above", faults={"profile": {"mode": "5xx"}},
             sweep_expect=[("CHECK_INCOMPLETE", I1, I1),
                           ("CHECK_INCOMPLETE", None, f"arn:aws:profile:{REGION}:{ACCOUNT}:domains/*")]),
]}


def spec_for(name):
    spec = Spec()
    SCENARIOS[name].drift(spec)
    return spec


def seed(aws, spec):
    """Builds `spec` in the emulated account (which must be empty)."""
    kms = aws.client("kms")
    if spec.role_exists:
        create_role(aws.client("iam"), spec, ROLE_NAME)
    domain_key = kms.create_key(Description="Customer Profiles domain key")["KeyMetadata"]["Arn"]
    storage_key = kms.create_key(Description="Call recordings key")["KeyMetadata"]["Arn"]
    if spec.domain_grant_ops:
        kms.create_grant(KeyId=domain_key, GranteePrincipal=ROLE_ARN, Operations=spec.domain_grant_ops)
    if spec.storage_grant:
        kms.create_grant(KeyId=storage_key, GranteePrincipal=ROLE_ARN,
                         Operations=["Decrypt", "GenerateDataKey", "Encrypt"])
    if spec.domain_key_denies:
        _deny_in_key_policy(kms, domain_key, spec.domain_key_denies)
    _set_key_state(kms, domain_key, spec.domain_key_state)
    _set_key_state(kms, storage_key, spec.storage_key_state)
    stream_key = _create_ctr_stream(aws.client("kinesis"), kms, spec)
    queue_url = subscribe_queue(aws)
    http_json("PUT", f"{aws.double_url}/_double/state", connect_state(spec, domain_key, storage_key))
    return Seeded(domain_key=domain_key, storage_key=storage_key, queue_url=queue_url, stream_key=stream_key)


def _create_ctr_stream(kinesis, kms, spec):
    """The Kinesis stream contact records go to; returns its key when encrypted."""
    name = STREAM_ARN.rsplit("/", 1)[1]
    kinesis.create_stream(StreamName=name, ShardCount=1)
    if not spec.stream_key:
        return None
    key = kms.create_key(Description="Contact record stream key")["KeyMetadata"]["Arn"]
    kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key)
    return key


def create_role(iam, spec, name):
    """A Connect service role named `name`, as `spec` has it."""
    iam.create_role(RoleName=name, Path=spec.role_path, AssumeRolePolicyDocument=json.dumps(spec.trust))
    if spec.managed_policy:
        iam.attach_role_policy(RoleName=name, PolicyArn=MANAGED_POLICY)
    for policy, doc in spec.inline.items():
        iam.put_role_policy(RoleName=name, PolicyName=policy, PolicyDocument=json.dumps(doc))


def subscribe_queue(aws):
    """The alert topic and an SQS queue subscribed to it (on-call); returns the queue URL."""
    return topic_with_queue(aws, TOPIC_NAME, QUEUE_NAME)[1]


def topic_with_queue(aws, topic_name, queue_name):
    """An SNS topic and an SQS queue subscribed to it (SNS envelopes, as on-call's); returns (topic ARN, queue URL)."""
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name=topic_name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, queue_url


def _deny_in_key_policy(kms, key_arn, operations):
    policy = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    policy["Statement"].append({"Sid": "DenyEveryone", "Effect": "Deny", "Principal": "*",
                                "Action": [f"kms:{op}" for op in operations], "Resource": "*"})
    kms.put_key_policy(KeyId=key_arn, PolicyName="default", Policy=json.dumps(policy))


def _set_key_state(kms, key_arn, state):
    key = key_arn.rsplit("/", 1)[1]  # moto answers 500 to these calls given an ARN
    if state == "Disabled":
        kms.disable_key(KeyId=key)
    elif state == "PendingDeletion":
        kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)


def instance(instance_id, alias, service_role):
    doc = {"Id": instance_id, "Arn": instance_arn(instance_id), "IdentityManagementType": "CONNECT_MANAGED",
           "InstanceAlias": alias, "CreatedTime": 1700000000, "InstanceStatus": "ACTIVE",
           "InboundCallsEnabled": True, "OutboundCallsEnabled": True}
    if service_role:
        doc["ServiceRole"] = service_role
    return doc


def connect_state(spec, domain_key, storage_key):
    """The test double's state document for `spec`."""
    instances = [instance(INSTANCE_ID, "acme", spec.service_role)]
    storage = {INSTANCE_ID: {
        "CONTACT_TRACE_RECORDS": [CTR_STREAM],
        "CALL_RECORDINGS": [{"AssociationId": "rec-1", "StorageType": "S3",
                             "S3Config": {"BucketName": "acme-recordings", "BucketPrefix": "connect",
                                          "EncryptionConfig": {"EncryptionType": "KMS", "KeyId": storage_key}}}],
    }}
    domains = [{"DomainName": spec.domain, "DefaultExpirationDays": 366, "DefaultEncryptionKey": domain_key}]
    domains += [{"DomainName": name, "DefaultExpirationDays": 366} for name in spec.extra_domains]
    integrations = [{"DomainName": spec.domain, "Uri": instance_arn(INSTANCE_ID), "ObjectTypeName": "CTR"}]
    if spec.second_instance:
        instances.append(instance(OTHER_INSTANCE_ID, "acme-emea", ROLE_ARN))
    return {"instances": instances, "storage_configs": storage, "domains": domains, "integrations": integrations}


# ----------------------------------------------------------------------------
# Central mode (issue 15): member accounts, each read through a role the guard
# assumes there. moto's STS assumes any role ARN, and credentials from it act
# in the role's account; the double answers each account and Region with its
# own state (bench/connect_profiles_double.py).

MEMBER_ROLE_NAME = "connect-slr-guard-audit"
RECORDINGS_KEY = "Call recordings key"


def member_role_arn(account, name=MEMBER_ROLE_NAME):
    return f"arn:aws:iam::{account}:role/{name}"


def place_instance_arn(account, region, instance_id):
    return f"arn:aws:connect:{region}:{account}:instance/{instance_id}"


def place_instance_id(account, region, n=0):
    """A stable instance id of its own for each account, Region and number."""
    return f"{account[:8]}-{zlib.crc32(region.encode()) & 0xffff:04x}-4000-8000-{n:012d}"


@dataclass
class SeededPlace:
    account: str
    region: str
    role_arn: str  # the account's Connect SLR (shared by its Regions)
    key_arn: str  # the Region's call recordings key
    instance_ids: list

    @property
    def instance_arns(self):
        return [place_instance_arn(self.account, self.region, i) for i in self.instance_ids]


def seed_place(aws, account, region, instances=1, role=True, grant=True, audit_role=True):
    """One account and Region of an organisation: `instances` ACTIVE instances, each with the account's Connect SLR
    (`role`: it exists; created once per account) and S3 call recordings under the Region's customer managed key
    (`grant`: granted to the SLR); and the member audit role (`audit_role`; moto does not need it to exist, AWS
    does). No Customer Profiles domain, no Kinesis stream: the drifts are a missing SLR or a missing grant."""
    iam, kms = aws.client("iam", account), aws.client("kms", account, region)
    slr_arn = f"arn:aws:iam::{account}:role{SLR_PATH}{ROLE_NAME}"
    names = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    if role and ROLE_NAME not in names:
        create_role(iam, Spec(inline={}), ROLE_NAME)
    if audit_role and MEMBER_ROLE_NAME not in names:
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]}
        iam.create_role(RoleName=MEMBER_ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))
    key = kms.create_key(Description=RECORDINGS_KEY)["KeyMetadata"]["Arn"]
    if grant:
        kms.create_grant(KeyId=key, GranteePrincipal=slr_arn, Operations=["Decrypt", "GenerateDataKey", "Encrypt"])
    ids = [place_instance_id(account, region, n) for n in range(instances)]
    docs, storage = [], {}
    for n, iid in enumerate(ids):
        doc = instance(iid, f"{account}-{region}-{n}", slr_arn)
        doc["Arn"] = place_instance_arn(account, region, iid)
        docs.append(doc)
        storage[iid] = {"CALL_RECORDINGS": [{
            "AssociationId": f"rec-{n}", "StorageType": "S3",
            "S3Config": {"BucketName": f"recordings-{account}-{region}", "BucketPrefix": "connect",
                         "EncryptionConfig": {"EncryptionType": "KMS", "KeyId": key}}}]}
    aws.put_state({"instances": docs, "storage_configs": storage}, account=account, region=region)
    return SeededPlace(account=account, region=region, role_arn=slr_arn, key_arn=key, instance_ids=ids)


def event_for(scenario, seeded, raw_text):
    """A sample event rewritten to name what this scenario seeded."""
    key_id = seeded.key_arn(scenario.event_key).rsplit("/", 1)[1]
    text = raw_text.replace(EVENT_KEY_ID, key_id)
    text = text.replace(EVENT_DOMAIN, scenario.event_domain)
    text = text.replace(INSTANCE_ID, scenario.event_instance)
    return json.loads(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS))
    parser.add_argument("--list", action="store_true", help="list the scenarios and what each must raise")
    parser.add_argument("--moto", help="moto server URL")
    parser.add_argument("--double", help="Connect/Customer Profiles test double URL")
    args = parser.parse_args(argv)
    if args.list or not args.scenario:
        for s in SCENARIOS.values():
            print(f"{s.name:28} {', '.join(r for r, _, _ in s.expect) or 'no alert'}")
        return 0
    if not (args.moto and args.double):
        parser.error("seeding needs --moto and --double")

    class Endpoints:
        moto_url, double_url = args.moto, args.double

        def client(self, service):
            import boto3
            return boto3.client(service, region_name=REGION, endpoint_url=args.moto,
                                aws_access_key_id="testing", aws_secret_access_key="testing")

    http_json("POST", f"{args.moto}/moto-api/reset")
    http_json("POST", f"{args.double}/_double/reset")
    seeded = seed(Endpoints(), spec_for(args.scenario))
    # The faults, if any, are for a fault proxy in front of moto and the double (bench/fault_proxy.py).
    print(json.dumps({**seeded.__dict__, "faults": SCENARIOS[args.scenario].faults}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
