"""Wire-compatibility tests for bench/connect_profiles_double.py.

The double is started as a subprocess on a free loopback port and driven with
boto3's "connect" and "customer-profiles" clients. boto3 serializes requests
and parses responses from the real service models (restJson1), so a passing
test means the double speaks the same wire format as the services.

Run: .venv/bin/python -m pytest bench/test_double.py
"""

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLE = os.path.join(HERE, "connect_profiles_double.py")
REGION = "eu-west-2"
ACCOUNT = "123456789012"
T0 = 1700000000


def instance_arn(instance_id):
    return f"arn:aws:connect:{REGION}:{ACCOUNT}:instance/{instance_id}"


def iid(n):
    return f"00000000-0000-4000-8000-{n:012d}"


def make_instance(n):
    return {
        "Id": iid(n),
        "Arn": instance_arn(iid(n)),
        "IdentityManagementType": "CONNECT_MANAGED",
        "InstanceAlias": f"alias-{n}",
        "CreatedTime": T0 + n,
        "ServiceRole": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_{n:04d}",
        "InstanceStatus": "ACTIVE",
        "InboundCallsEnabled": True,
        "OutboundCallsEnabled": n % 2 == 0,
    }


KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"


def base_state(n_instances=3):
    instances = [make_instance(n) for n in range(1, n_instances + 1)]
    first = iid(1)
    return {
        "instances": instances,
        "storage_configs": {
            first: {
                "CALL_RECORDINGS": [
                    {
                        "AssociationId": f"assoc-{k}",
                        "StorageType": "S3",
                        "S3Config": {
                            "BucketName": "recordings-bucket",
                            "BucketPrefix": f"connect/rec{k}",
                            "EncryptionConfig": {"EncryptionType": "KMS", "KeyId": KEY_ARN},
                        },
                    }
                    for k in range(12)
                ],
                "MEDIA_STREAMS": [
                    {
                        "AssociationId": "assoc-kvs",
                        "StorageType": "KINESIS_VIDEO_STREAM",
                        "KinesisVideoStreamConfig": {
                            "Prefix": "live",
                            "RetentionPeriodHours": 24,
                            "EncryptionConfig": {"EncryptionType": "KMS", "KeyId": KEY_ARN},
                        },
                    }
                ],
                "CONTACT_TRACE_RECORDS": [
                    {
                        "AssociationId": "assoc-ks",
                        "StorageType": "KINESIS_STREAM",
                        "KinesisStreamConfig": {"StreamArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/ctr"},
                    }
                ],
                "AGENT_EVENTS": [
                    {
                        "AssociationId": "assoc-kf",
                        "StorageType": "KINESIS_FIREHOSE",
                        "KinesisFirehoseConfig": {"FirehoseArn": f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/ae"},
                    }
                ],
            }
        },
        "bots": {
            first: [
                {"LexBot": {"Name": "OrderFlowers", "LexRegion": REGION}},
                {"LexV2Bot": {"AliasArn": f"arn:aws:lex:{REGION}:{ACCOUNT}:bot-alias/BOT1/ALIAS1"}},
                {"LexV2Bot": {"AliasArn": f"arn:aws:lex:{REGION}:{ACCOUNT}:bot-alias/BOT2/ALIAS2"}},
            ]
        },
        "domains": [
            {
                "DomainName": f"domain-{k}",
                "DefaultExpirationDays": 366,
                "DefaultEncryptionKey": KEY_ARN,
                "CreatedAt": T0 + 100 + k,
                "LastUpdatedAt": T0 + 200 + k,
                "Tags": {"team": "contact-centre"},
            }
            for k in range(5)
        ]
        + [
            {
                "DomainName": "domain-nokey",
                "DefaultExpirationDays": 30,
                "CreatedAt": "2024-01-02T03:04:05Z",
                "LastUpdatedAt": T0,
                "Tags": {},
            }
        ],
        "integrations": [
            {
                "DomainName": "domain-0",
                "Uri": instance_arn(first),
                "ObjectTypeName": "CTR",
                "CreatedAt": T0 + 300,
                "LastUpdatedAt": T0 + 301,
            },
            {
                "DomainName": "domain-0",
                "Uri": instance_arn(first),
                "ObjectTypeName": "CTR-hidden",
                "CreatedAt": T0 + 302,
                "LastUpdatedAt": T0 + 303,
                "Hidden": True,
            },
            {
                "DomainName": "domain-1",
                "Uri": instance_arn(iid(2)),
                "ObjectTypeName": "CTR",
                "CreatedAt": T0 + 304,
                "LastUpdatedAt": T0 + 305,
            },
        ],
        "faults": {"deny_instances": [], "throttle_all": False, "error_5xx_all": False, "delay_ms": 0},
    }


def start_double(*extra):
    proc = subprocess.Popen(
        [sys.executable, DOUBLE, "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("PORT="):
        proc.kill()
        raise RuntimeError(f"double did not announce its port: {line!r} {proc.stderr.read()}")
    return proc, f"http://127.0.0.1:{int(line[5:])}"


def stop_double(proc):
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http(base, method, path, body=None, headers=None):
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")


@pytest.fixture(scope="module")
def double():
    proc, base = start_double()
    try:
        yield base
    finally:
        stop_double(proc)


@pytest.fixture
def base(double):
    status, _, _ = http(double, "POST", "/_double/reset")
    assert status == 200
    status, _, body = http(double, "PUT", "/_double/state", base_state())
    assert status == 200, body
    return double


def client(service, base_url, retries=1):
    return boto3.client(
        service,
        endpoint_url=base_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # total_max_attempts counts the first try; botocore's "max_attempts" does not.
        config=Config(retries={"total_max_attempts": retries, "mode": "standard"}),
    )


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


# ---------------------------------------------------------------- Connect


def test_list_instances_paginator_25_instances_3_pages(base, connect):
    state = base_state(25)
    assert http(base, "PUT", "/_double/state", state)[0] == 200
    pages = list(connect.get_paginator("list_instances").paginate())
    assert [len(p["InstanceSummaryList"]) for p in pages] == [10, 10, 5]
    assert "NextToken" in pages[0] and "NextToken" in pages[1] and "NextToken" not in pages[2]
    ids = [i["Id"] for p in pages for i in p["InstanceSummaryList"]]
    assert ids == [iid(n) for n in range(1, 26)]
    first = pages[0]["InstanceSummaryList"][0]
    assert first["Arn"] == instance_arn(iid(1))
    assert first["IdentityManagementType"] == "CONNECT_MANAGED"
    assert first["InstanceStatus"] == "ACTIVE"
    assert first["InboundCallsEnabled"] is True and first["OutboundCallsEnabled"] is False
    assert first["ServiceRole"].endswith("AWSServiceRoleForAmazonConnect_0001")
    assert epoch(first["CreatedTime"]) == T0 + 1
    calls = http(base, "GET", "/_double/calls")[2]
    listed = [c for c in calls if c["operation"] == "ListInstances"]
    assert len(listed) == 3 and all(c["status"] == 200 and c["service"] == "connect" for c in listed)


def test_list_instances_max_results(base, connect):
    resp = connect.list_instances(MaxResults=2)
    assert len(resp["InstanceSummaryList"]) == 2 and resp["NextToken"]
    rest = connect.list_instances(MaxResults=2, NextToken=resp["NextToken"])
    assert [i["Id"] for i in rest["InstanceSummaryList"]] == [iid(3)]
    assert "NextToken" not in rest
    calls = http(base, "GET", "/_double/calls")[2]
    assert calls[-1]["query"]["maxResults"] == "2" and "nextToken" in calls[-1]["query"]


def test_list_instances_bad_token_and_range(connect):
    with pytest.raises(ClientError) as ei:
        connect.list_instances(NextToken="garbage")
    assert error_of(ei)[:2] == ("InvalidRequestException", 400)


def test_describe_instance(connect):
    inst = connect.describe_instance(InstanceId=iid(2))["Instance"]
    assert inst["Id"] == iid(2) and inst["InstanceAlias"] == "alias-2"
    assert epoch(inst["CreatedTime"]) == T0 + 2
    # InstanceId given as an ARN: botocore percent-encodes ':' and '/' in the label.
    inst = connect.describe_instance(InstanceId=instance_arn(iid(3)))["Instance"]
    assert inst["Id"] == iid(3)


def test_describe_instance_unknown_is_404(connect):
    with pytest.raises(ClientError) as ei:
        connect.describe_instance(InstanceId="does-not-exist")
    code, status, message = error_of(ei)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert "does-not-exist" in message
    assert ei.value.__class__.__name__ == "ResourceNotFoundException"  # modeled error class


def test_list_instance_storage_configs_all_types(connect):
    pages = list(
        connect.get_paginator("list_instance_storage_configs").paginate(
            InstanceId=iid(1), ResourceType="CALL_RECORDINGS"
        )
    )
    assert [len(p["StorageConfigs"]) for p in pages] == [10, 2]
    s3 = pages[0]["StorageConfigs"][0]
    assert s3["StorageType"] == "S3"
    assert s3["S3Config"]["EncryptionConfig"] == {"EncryptionType": "KMS", "KeyId": KEY_ARN}

    kvs = connect.list_instance_storage_configs(InstanceId=iid(1), ResourceType="MEDIA_STREAMS")
    cfg = kvs["StorageConfigs"][0]["KinesisVideoStreamConfig"]
    assert cfg["RetentionPeriodHours"] == 24 and cfg["EncryptionConfig"]["KeyId"] == KEY_ARN

    ks = connect.list_instance_storage_configs(InstanceId=iid(1), ResourceType="CONTACT_TRACE_RECORDS")
    assert ks["StorageConfigs"][0]["KinesisStreamConfig"]["StreamArn"].endswith(":stream/ctr")
    kf = connect.list_instance_storage_configs(InstanceId=iid(1), ResourceType="AGENT_EVENTS")
    assert kf["StorageConfigs"][0]["KinesisFirehoseConfig"]["FirehoseArn"].endswith("/ae")

    empty = connect.list_instance_storage_configs(InstanceId=iid(2), ResourceType="CHAT_TRANSCRIPTS")
    assert empty["StorageConfigs"] == [] and "NextToken" not in empty


def test_list_instance_storage_configs_unknown_instance(connect):
    with pytest.raises(ClientError) as ei:
        connect.list_instance_storage_configs(InstanceId="nope", ResourceType="CALL_RECORDINGS")
    assert error_of(ei)[:2] == ("ResourceNotFoundException", 404)


def test_list_bots_v1_v2(connect):
    v1 = connect.list_bots(InstanceId=iid(1), LexVersion="V1")["LexBots"]
    assert v1 == [{"LexBot": {"Name": "OrderFlowers", "LexRegion": REGION}}]
    pages = list(connect.get_paginator("list_bots").paginate(InstanceId=iid(1), LexVersion="V2", PaginationConfig={"PageSize": 1}))
    assert [len(p["LexBots"]) for p in pages] == [1, 1]
    assert pages[1]["LexBots"][0]["LexV2Bot"]["AliasArn"].endswith("BOT2/ALIAS2")
    assert connect.list_bots(InstanceId=iid(2), LexVersion="V2")["LexBots"] == []


def test_denied_instance(base, connect, profiles):
    faults = {"deny_instances": [iid(1)]}
    assert http(base, "PUT", "/_double/faults", faults)[0] == 200
    for call in (
        lambda: connect.describe_instance(InstanceId=iid(1)),
        lambda: connect.describe_instance(InstanceId=instance_arn(iid(1))),
        lambda: connect.list_instance_storage_configs(InstanceId=iid(1), ResourceType="CALL_RECORDINGS"),
        lambda: connect.list_bots(InstanceId=iid(1), LexVersion="V1"),
        lambda: profiles.list_account_integrations(Uri=instance_arn(iid(1))),
    ):
        with pytest.raises(ClientError) as ei:
            call()
        assert error_of(ei)[:2] == ("AccessDeniedException", 403)
    # Other instances and the listing itself still work.
    assert connect.describe_instance(InstanceId=iid(2))["Instance"]["Id"] == iid(2)
    assert len(connect.list_instances()["InstanceSummaryList"]) == 3
    assert len(profiles.list_account_integrations(Uri=instance_arn(iid(2)))["Items"]) == 1
    calls = http(base, "GET", "/_double/calls")[2]
    assert sum(1 for c in calls if c.get("error") == "AccessDeniedException") == 5


# ---------------------------------------------------------------- Profiles


def test_list_account_integrations(base, profiles):
    resp = profiles.list_account_integrations(Uri=instance_arn(iid(1)))
    items = resp["Items"]
    assert [i["ObjectTypeName"] for i in items] == ["CTR"]
    assert items[0]["DomainName"] == "domain-0" and items[0]["Uri"] == instance_arn(iid(1))
    assert epoch(items[0]["CreatedAt"]) == T0 + 300 and epoch(items[0]["LastUpdatedAt"]) == T0 + 301
    hidden = profiles.list_account_integrations(Uri=instance_arn(iid(1)), IncludeHidden=True)["Items"]
    assert [i["ObjectTypeName"] for i in hidden] == ["CTR", "CTR-hidden"]
    assert "Hidden" not in hidden[1]
    paged = profiles.list_account_integrations(Uri=instance_arn(iid(1)), IncludeHidden=True, MaxResults=1)
    assert len(paged["Items"]) == 1 and paged["NextToken"]
    rest = profiles.list_account_integrations(
        Uri=instance_arn(iid(1)), IncludeHidden=True, MaxResults=1, NextToken=paged["NextToken"]
    )
    assert rest["Items"][0]["ObjectTypeName"] == "CTR-hidden" and "NextToken" not in rest
    call = http(base, "GET", "/_double/calls")[2][-1]
    assert call["operation"] == "ListAccountIntegrations" and call["method"] == "POST"
    assert call["query"] == {"include-hidden": "true", "max-results": "1", "next-token": paged["NextToken"]}
    assert profiles.list_account_integrations(Uri="arn:aws:s3:::other")["Items"] == []


def test_get_domain(profiles):
    dom = profiles.get_domain(DomainName="domain-2")
    assert dom["DomainName"] == "domain-2"
    assert dom["DefaultExpirationDays"] == 366
    assert dom["DefaultEncryptionKey"] == KEY_ARN
    assert dom["Tags"] == {"team": "contact-centre"}
    assert epoch(dom["CreatedAt"]) == T0 + 102 and epoch(dom["LastUpdatedAt"]) == T0 + 202
    nokey = profiles.get_domain(DomainName="domain-nokey")
    assert "DefaultEncryptionKey" not in nokey
    assert nokey["CreatedAt"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def test_get_domain_unknown_is_404(profiles):
    with pytest.raises(ClientError) as ei:
        profiles.get_domain(DomainName="no-such-domain")
    code, status, message = error_of(ei)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert "no-such-domain" in message


def test_list_domains_paginated(profiles):
    first = profiles.list_domains(MaxResults=4)
    assert [d["DomainName"] for d in first["Items"]] == ["domain-0", "domain-1", "domain-2", "domain-3"]
    assert set(first["Items"][0]) == {"DomainName", "CreatedAt", "LastUpdatedAt", "Tags"}
    second = profiles.list_domains(MaxResults=4, NextToken=first["NextToken"])
    assert [d["DomainName"] for d in second["Items"]] == ["domain-4", "domain-nokey"]
    assert "NextToken" not in second
    assert len(profiles.list_domains()["Items"]) == 6


def test_profiles_bad_request(profiles):
    with pytest.raises(ClientError) as ei:
        profiles.list_domains(NextToken="not-a-token")
    assert error_of(ei)[:2] == ("BadRequestException", 400)


# ---------------------------------------------------------------- faults


def test_throttle_all(base):
    assert http(base, "PUT", "/_double/faults", {"throttle_all": True})[0] == 200
    http(base, "DELETE", "/_double/calls")
    c = client("connect", base, retries=1)
    p = client("customer-profiles", base, retries=1)
    with pytest.raises(ClientError) as ei:
        c.list_instances()
    assert error_of(ei)[:2] == ("ThrottlingException", 429)
    with pytest.raises(ClientError) as ei:
        p.get_domain(DomainName="domain-0")
    assert error_of(ei)[:2] == ("ThrottlingException", 429)
    # The SDK's standard retry mode retries throttling: 3 attempts, all logged.
    with pytest.raises(ClientError):
        client("connect", base, retries=3).describe_instance(InstanceId=iid(1))
    calls = http(base, "GET", "/_double/calls")[2]
    assert [c["operation"] for c in calls] == ["ListInstances", "GetDomain"] + ["DescribeInstance"] * 3
    assert all(c["status"] == 429 for c in calls)


def test_error_5xx_all(base):
    assert http(base, "PUT", "/_double/faults", {"error_5xx_all": True})[0] == 200
    with pytest.raises(ClientError) as ei:
        client("connect", base).list_instances()
    assert error_of(ei)[:2] == ("InternalServiceException", 500)
    with pytest.raises(ClientError) as ei:
        client("customer-profiles", base).list_domains()
    assert error_of(ei)[:2] == ("InternalServerException", 500)


def test_delay_ms(base, connect):
    assert http(base, "PUT", "/_double/faults", {"delay_ms": 300})[0] == 200
    start = time.monotonic()
    connect.list_instances()
    assert time.monotonic() - start >= 0.3


# ---------------------------------------------------------------- control plane / robustness


def test_state_roundtrip_and_reset(base):
    status, _, state = http(base, "GET", "/_double/state")
    assert status == 200 and len(state["instances"]) == 3
    # ISO timestamps are normalized to epoch seconds.
    nokey = [d for d in state["domains"] if d["DomainName"] == "domain-nokey"][0]
    assert nokey["CreatedAt"] == 1704164645
    assert http(base, "POST", "/_double/reset")[0] == 200
    state = http(base, "GET", "/_double/state")[2]
    assert state["instances"] == [] and state["faults"]["deny_instances"] == []
    assert http(base, "GET", "/_double/calls")[2] == []


def test_calls_log_and_clear(base, connect, profiles):
    connect.list_instances()
    profiles.list_domains()
    calls = http(base, "GET", "/_double/calls")[2]
    assert [(c["service"], c["operation"], c["path"], c["status"]) for c in calls] == [
        ("connect", "ListInstances", "/instance", 200),
        ("profiles", "ListDomains", "/domains", 200),
    ]
    assert http(base, "DELETE", "/_double/calls")[0] == 200
    assert http(base, "GET", "/_double/calls")[2] == []


def test_unknown_operation(base):
    status, headers, body = http(base, "GET", "/contact-flows/abc")
    assert status == 404
    assert headers.get("X-Amzn-ErrorType") == "UnknownOperationException"
    assert "GET /contact-flows/abc" in body["message"] and body["Message"] == body["message"]
    status, headers, _ = http(base, "DELETE", "/instance/x")
    assert status == 404 and headers.get("X-Amzn-ErrorType") == "UnknownOperationException"


def test_bad_json_bodies(base):
    status, headers, body = http(base, "POST", "/integrations", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and headers.get("X-Amzn-ErrorType") == "BadRequestException"
    status, _, _ = http(base, "POST", "/integrations", {"NoUri": 1})
    assert status == 400
    status, _, body = http(base, "PUT", "/_double/state", b"[1, 2")
    assert status == 400
    status, _, body = http(base, "PUT", "/_double/state", {"instance": []})
    assert status == 400 and "unknown keys" in body["message"]
    status, _, body = http(base, "PUT", "/_double/state", {"instances": [{"Id": "x"}]})
    assert status == 400 and "Arn" in body["message"]
    status, _, body = http(base, "PUT", "/_double/faults", {"throttle_all": "yes"})
    assert status == 400
    # The server is still alive and the previous state intact.
    assert len(http(base, "GET", "/_double/state")[2]["instances"]) == 3


def test_state_file_flag(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(base_state(12)))
    proc, base_url = start_double("--state", str(path))
    try:
        pages = list(client("connect", base_url).get_paginator("list_instances").paginate())
        assert [len(p["InstanceSummaryList"]) for p in pages] == [10, 2]
    finally:
        stop_double(proc)
    assert proc.returncode == 0
    assert proc.stderr.read() == ""  # quiet: no per-request log lines


def test_env_endpoint_urls_share_one_port(base):
    """What the Lambda's SDK does: per-service endpoint env vars, same base URL."""
    env = dict(os.environ, AWS_ENDPOINT_URL_CONNECT=base, AWS_ENDPOINT_URL_CUSTOMER_PROFILES=base,
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    code = (
        "import boto3;"
        "c=boto3.client('connect');p=boto3.client('customer-profiles');"
        "print(len(c.list_instances()['InstanceSummaryList']), len(p.list_domains()['Items']))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "6"]
