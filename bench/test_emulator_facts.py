"""What the bench relies on moto server to do (bench/MOTO-NOTES.md).

When one of these fails after a moto upgrade, the bench's seeding or its
reading back of alerts no longer holds: fix them and the notes together. The
gap tests say so when moto fixes a gap: then the workaround in
bench/scenarios.py, the note and the README's "Known emulator gaps" can go.
"""

import json

import pytest
from botocore.exceptions import ClientError

from local_aws import ACCOUNT, REGION, http_json
from scenarios import CONNECT_TRUST, MANAGED_POLICY, ROLE_ARN, ROLE_NAME, SLR_PATH


def test_the_connect_managed_policy_is_loaded_and_survives_a_reset(account):
    # LocalAws starts moto with MOTO_IAM_LOAD_MANAGED_POLICIES=true; without it the attach is NoSuchEntity.
    iam = account.client("iam")
    iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(CONNECT_TRUST))
    iam.attach_role_policy(RoleName="r", PolicyArn=MANAGED_POLICY)
    assert http_json("POST", f"{account.moto_url}/moto-api/reset") == {"status": "ok"}
    assert iam.list_roles()["Roles"] == []
    assert iam.get_policy(PolicyArn=MANAGED_POLICY)["Policy"]["Path"] == "/aws-service-role/"


def test_a_reset_empties_what_the_bench_seeds(account):
    kms, sns, sqs = (account.client(s) for s in ("kms", "sns", "sqs"))
    kms.create_key()
    sns.create_topic(Name="t")
    sqs.create_queue(QueueName="q")
    account.reset()
    assert kms.list_keys()["Keys"] == []
    assert sns.list_topics()["Topics"] == []
    assert sqs.list_queues().get("QueueUrls", []) == []


def test_a_role_with_the_real_slr_name_and_path_can_be_created(account):
    """The workaround for moto's SLR names (below): create_role on the SLR path."""
    iam = account.client("iam")
    role = iam.create_role(RoleName=ROLE_NAME, Path=SLR_PATH, AssumeRolePolicyDocument=json.dumps(CONNECT_TRUST))
    assert role["Role"]["Arn"] == ROLE_ARN


def test_gap_moto_names_a_connect_slr_after_the_service_label(account):
    role = account.client("iam").create_service_linked_role(AWSServiceName="connect.amazonaws.com", CustomSuffix="x")
    assert role["Role"]["RoleName"] == "AWSServiceRoleForconnect_x", "fixed: create the SLR as AWS would"


def test_keys_are_customer_managed_in_the_bench_account(account):
    kms = account.client("kms")
    key = kms.create_key()["KeyMetadata"]
    assert key["Arn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key['KeyId']}"  # MOTO_ACCOUNT_ID
    assert (key["KeyState"], key["KeyManager"]) == ("Enabled", "CUSTOMER")
    assert kms.describe_key(KeyId=key["Arn"])["KeyMetadata"]["KeyId"] == key["KeyId"]


def test_grants_read_back_as_created_and_revoked(account):
    kms = account.client("kms")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    grant = kms.create_grant(KeyId=key, GranteePrincipal=ROLE_ARN, Operations=["Decrypt", "GenerateDataKey"])
    [listed] = kms.list_grants(KeyId=key)["Grants"]
    assert (listed["GranteePrincipal"], listed["Operations"]) == (ROLE_ARN, ["Decrypt", "GenerateDataKey"])
    other = kms.list_grants(KeyId=key, GranteePrincipal="arn:aws:iam::444455556666:role/other")["Grants"]
    assert other == [listed], "gap fixed: ListGrants now filters by GranteePrincipal"
    kms.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    assert kms.list_grants(KeyId=key)["Grants"] == []


def test_key_states_are_set_by_key_id_not_by_arn(account):
    kms = account.client("kms")
    disabled, pending = (kms.create_key()["KeyMetadata"] for _ in range(2))
    with pytest.raises(ClientError) as err:
        kms.disable_key(KeyId=disabled["Arn"])
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500, "gap fixed: DisableKey takes an ARN"
    kms.disable_key(KeyId=disabled["KeyId"])
    kms.schedule_key_deletion(KeyId=pending["KeyId"], PendingWindowInDays=7)
    assert kms.describe_key(KeyId=disabled["Arn"])["KeyMetadata"]["KeyState"] == "Disabled"
    assert kms.describe_key(KeyId=pending["Arn"])["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_sns_delivers_to_sqs_in_process_as_an_envelope(account):
    sns, sqs = account.client("sns"), account.client("sqs")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="on-call")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    sns.publish(TopicArn=topic, Message='{"rule": "R"}', Subject="[HIGH] R: s",
                MessageAttributes={"severity": {"DataType": "String", "StringValue": "HIGH"}})
    [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]
    envelope = json.loads(message["Body"])
    assert (envelope["Type"], envelope["Message"], envelope["Subject"]) == ("Notification", '{"rule": "R"}', "[HIGH] R: s")
    assert envelope["MessageAttributes"] == {"severity": {"Type": "String", "Value": "HIGH"}}
