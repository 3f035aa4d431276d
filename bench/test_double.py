"""Wire-compatibility tests for bench/connect_profiles_double.py.

The double is started as a subprocess on a free loopback port and driven with
boto3's "connect" and "customer-profiles" clients. boto3 serializes requests
and parses responses from the real service models (restJson1), so a passing
test means the double speaks the same wire format as the services, for the
operations the guard calls.
"""

import datetime as dt
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local_aws import ACCOUNT, REGION
from scenarios import (CTR_STREAM, EVENT_DOMAIN, INSTANCE_ID, ROLE_ARN, Spec, connect_state, instance,
                       instance_arn)

DOUBLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "connect_profiles_double.py")
DOMAIN_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/aaaaaaaa-1111-2222-3333-444444444444"
STORAGE_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/bbbbbbbb-1111-2222-3333-444444444444"
T0 = 1700000000


def iid(n):
    return f"00000000-0000-4000-8000-{n:012d}"


def healthy():
    """The healthy account's state document, as the bench seeds it."""
    return connect_state(Spec(), DOMAIN_KEY, STORAGE_KEY)


def http(base, method, path, body=None):
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")


@pytest.fixture(scope="module")
def double():
    proc = subprocess.Popen([sys.executable, DOUBLE, "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("PORT="), f"double did not announce its port: {line!r}"
    yield f"http://127.0.0.1:{int(line[5:])}"
    proc.terminate()
    assert proc.wait(timeout=5) == 0


def put_state(base, state):
    status, _, body = http(base, "PUT", "/_double/state", state)
    assert status == 200, body


@pytest.fixture
def base(double):
    assert http(double, "POST", "/_double/reset")[0] == 200
    put_state(double, healthy())
    return double


def client(service, base_url):
    return boto3.client(service, endpoint_url=base_url, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture
def connect(base):
    return client("connect", base)


@pytest.fixture
def profiles(base):
    return client("customer-profiles", base)


def epoch(value):
    assert isinstance(value, dt.datetime)
    return value.timestamp()


def error_of(excinfo):
    err = excinfo.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"].get("Message")


def test_the_healthy_account_as_the_guard_reads_it(connect, profiles):
    [summary] = connect.list_instances()["InstanceSummaryList"]
    assert (summary["Id"], summary["Arn"], summary["ServiceRole"]) == (INSTANCE_ID, instance_arn(INSTANCE_ID), ROLE_ARN)
    assert summary["InstanceStatus"] == "ACTIVE" and summary["IdentityManagementType"] == "CONNECT_MANAGED"
    assert summary["InboundCallsEnabled"] is True and epoch(summary["CreatedTime"]) == T0
    assert connect.describe_instance(InstanceId=INSTANCE_ID)["Instance"]["ServiceRole"] == ROLE_ARN
    ctr = connect.list_instance_storage_configs(InstanceId=INSTANCE_ID, ResourceType="CONTACT_TRACE_RECORDS")
    assert ctr["StorageConfigs"] == [CTR_STREAM] and "NextToken" not in ctr
    [recordings] = connect.list_instance_storage_configs(
        InstanceId=INSTANCE_ID, ResourceType="CALL_RECORDINGS")["StorageConfigs"]
    assert recordings["S3Config"]["EncryptionConfig"] == {"EncryptionType": "KMS", "KeyId": STORAGE_KEY}
    empty = connect.list_instance_storage_configs(InstanceId=INSTANCE_ID, ResourceType="CHAT_TRANSCRIPTS")
    assert empty["StorageConfigs"] == []
    [integration] = profiles.list_account_integrations(Uri=instance_arn(INSTANCE_ID))["Items"]
    assert integration["DomainName"] == EVENT_DOMAIN and integration["ObjectTypeName"] == "CTR"
    assert epoch(integration["CreatedAt"]) == T0 and epoch(integration["LastUpdatedAt"]) == T0
    assert profiles.list_account_integrations(Uri=instance_arn(iid(9)))["Items"] == []
    domain = profiles.get_domain(DomainName=EVENT_DOMAIN)
    assert (domain["DefaultEncryptionKey"], domain["DefaultExpirationDays"]) == (DOMAIN_KEY, 366)
    assert [d["DomainName"] for d in profiles.list_domains()["Items"]] == [EVENT_DOMAIN]


def test_list_instances_pages_of_10(base, connect):
    put_state(base, {"instances": [instance(iid(n), f"alias-{n}", ROLE_ARN) for n in range(1, 26)]})
    pages = list(connect.get_paginator("list_instances").paginate())
    assert [len(p["InstanceSummaryList"]) for p in pages] == [10, 10, 5]
    assert [i["Id"] for p in pages for i in p["InstanceSummaryList"]] == [iid(n) for n in range(1, 26)]
    first = connect.list_instances(MaxResults=2)
    second = connect.list_instances(MaxResults=2, NextToken=first["NextToken"])
    assert [i["Id"] for i in second["InstanceSummaryList"]] == [iid(3), iid(4)] and second["NextToken"]
    for bad in ({"NextToken": "garbage"}, {"MaxResults": 11}):
        with pytest.raises(ClientError) as ei:
            connect.list_instances(**bad)
        assert error_of(ei)[:2] == ("InvalidRequestException", 400)


def test_describe_instance_by_id_or_arn(connect):
    assert connect.describe_instance(InstanceId=INSTANCE_ID)["Instance"]["InstanceAlias"] == "acme"
    # An ARN: botocore percent-encodes ':' and '/' in the label.
    assert connect.describe_instance(InstanceId=instance_arn(INSTANCE_ID))["Instance"]["Id"] == INSTANCE_ID
    for call in (lambda: connect.describe_instance(InstanceId="does-not-exist"),
                 lambda: connect.list_instance_storage_configs(InstanceId="does-not-exist",
                                                               ResourceType="CALL_RECORDINGS")):
        with pytest.raises(ClientError) as ei:
            call()
        code, status, message = error_of(ei)
        assert (code, status) == ("ResourceNotFoundException", 404) and "does-not-exist" in message
        assert ei.value.__class__.__name__ == "ResourceNotFoundException"  # modeled error class


def test_storage_configs_of_every_kind_and_pages_of_10(base, connect):
    key = {"EncryptionType": "KMS", "KeyId": STORAGE_KEY}
    recordings = [{"AssociationId": f"rec-{k}", "StorageType": "S3",
                   "S3Config": {"BucketName": "recordings", "BucketPrefix": f"rec{k}", "EncryptionConfig": key}}
                  for k in range(12)]
    put_state(base, {**healthy(), "storage_configs": {INSTANCE_ID: {
        "CALL_RECORDINGS": recordings,
        "MEDIA_STREAMS": [{"AssociationId": "kvs", "StorageType": "KINESIS_VIDEO_STREAM",
                           "KinesisVideoStreamConfig": {"Prefix": "live", "RetentionPeriodHours": 24,
                                                        "EncryptionConfig": key}}],
        "AGENT_EVENTS": [{"AssociationId": "kf", "StorageType": "KINESIS_FIREHOSE",
                          "KinesisFirehoseConfig": {"FirehoseArn": f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/ae"}}],
    }}})
    pages = list(connect.get_paginator("list_instance_storage_configs").paginate(
        InstanceId=INSTANCE_ID, ResourceType="CALL_RECORDINGS"))
    assert [len(p["StorageConfigs"]) for p in pages] == [10, 2]
    assert [c["AssociationId"] for p in pages for c in p["StorageConfigs"]] == [f"rec-{k}" for k in range(12)]
    kvs = connect.list_instance_storage_configs(InstanceId=INSTANCE_ID, ResourceType="MEDIA_STREAMS")
    assert kvs["StorageConfigs"][0]["KinesisVideoStreamConfig"]["EncryptionConfig"] == key
    kf = connect.list_instance_storage_configs(InstanceId=INSTANCE_ID, ResourceType="AGENT_EVENTS")
    assert kf["StorageConfigs"][0]["KinesisFirehoseConfig"]["FirehoseArn"].endswith("/ae")


def test_integrations_and_domains_pages(base, profiles):
    state = healthy()
    state["domains"] = [{"DomainName": f"domain-{k}", "DefaultExpirationDays": 30, "CreatedAt": T0 + k,
                         "Tags": {"team": "contact-centre"}} for k in range(6)]
    state["integrations"] = [{"DomainName": f"domain-{k}", "Uri": instance_arn(INSTANCE_ID)} for k in range(2)]
    put_state(base, state)
    first = profiles.list_account_integrations(Uri=instance_arn(INSTANCE_ID), MaxResults=1)
    rest = profiles.list_account_integrations(Uri=instance_arn(INSTANCE_ID), MaxResults=1, NextToken=first["NextToken"])
    assert [i["DomainName"] for i in first["Items"] + rest["Items"]] == ["domain-0", "domain-1"]
    assert "NextToken" not in rest
    first = profiles.list_domains(MaxResults=4)
    assert [d["DomainName"] for d in first["Items"]] == [f"domain-{k}" for k in range(4)]
    assert set(first["Items"][0]) == {"DomainName", "CreatedAt", "LastUpdatedAt", "Tags"}
    assert epoch(first["Items"][1]["CreatedAt"]) == T0 + 1
    rest = profiles.list_domains(MaxResults=4, NextToken=first["NextToken"])
    assert [d["DomainName"] for d in rest["Items"]] == ["domain-4", "domain-5"] and "NextToken" not in rest
    assert "DefaultEncryptionKey" not in profiles.get_domain(DomainName="domain-0")
    with pytest.raises(ClientError) as ei:
        profiles.list_domains(NextToken="not-a-token")
    assert error_of(ei)[:2] == ("BadRequestException", 400)
    with pytest.raises(ClientError) as ei:
        profiles.get_domain(DomainName="no-such-domain")
    code, status, message = error_of(ei)
    assert (code, status) == ("ResourceNotFoundException", 404) and "no-such-domain" in message


def test_reset_empties_the_account(base, connect):
    assert http(base, "POST", "/_double/reset")[0] == 200
    assert connect.list_instances()["InstanceSummaryList"] == []


def test_unknown_operations_and_bad_documents(base, connect):
    status, headers, body = http(base, "GET", "/contact-flows/abc")
    assert status == 404 and headers.get("X-Amzn-ErrorType") == "UnknownOperationException"
    assert "GET /contact-flows/abc" in body["message"] and body["Message"] == body["message"]
    assert http(base, "GET", "/instance/x/bots")[0] == 404  # ListBots: the guard does not call it
    status, headers, _ = http(base, "POST", "/integrations", b"{not json")
    assert status == 400 and headers.get("X-Amzn-ErrorType") == "BadRequestException"
    assert http(base, "POST", "/integrations", {"NoUri": 1})[0] == 400
    assert http(base, "PUT", "/_double/state", b"[1, 2")[0] == 400
    status, _, body = http(base, "PUT", "/_double/state", {"faults": {}})
    assert status == 400 and "unknown keys" in body["message"]
    status, _, body = http(base, "PUT", "/_double/state", {"instances": [{"Id": "x"}]})
    assert status == 400 and "Arn" in body["message"]
    # The server is still alive and the previous state intact.
    assert len(connect.list_instances()["InstanceSummaryList"]) == 1


def test_env_endpoint_urls_share_one_port(base):
    """What the Lambda's SDK does: per-service endpoint env vars, same base URL."""
    env = dict(os.environ, AWS_ENDPOINT_URL_CONNECT=base, AWS_ENDPOINT_URL_CUSTOMER_PROFILES=base,
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    code = ("import boto3; c = boto3.client('connect'); p = boto3.client('customer-profiles');"
            "print(len(c.list_instances()['InstanceSummaryList']), len(p.list_domains()['Items']))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]
