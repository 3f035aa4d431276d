"""The emulated account on loopback: moto server (IAM, KMS, SNS, SQS, STS)
and the Connect/Customer Profiles test double, each on a free port, torn
down on exit even when a test fails.

The guard reaches them through the standard SDK settings only:
AWS_ENDPOINT_URL (moto) and AWS_ENDPOINT_URL_CONNECT /
AWS_ENDPOINT_URL_CUSTOMER_PROFILES (the double), or all three at a
bench/fault_proxy.py in front of both.

Other accounts (central mode): `client(service, account)` acts in another
account through a role assumed with moto's STS, and `put_state(..., account,
region)` gives the double that account and Region's state; the double tells
each caller's account from its access key.
"""

import atexit
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3

BENCH = Path(__file__).resolve().parent
ACCOUNT = "111122223333"  # moto's default account here (MOTO_SERVER below): the emulated account
REGION = "eu-west-2"

# moto server with ACCOUNT as its default account (unknown access keys, such as
# the bench's "testing", act there) and multi-account STS kept working:
# credentials from AssumeRole act in the role's account. MOTO_ACCOUNT_ID would
# set the default too, but it overrides the account of every request, assumed
# roles' included (moto's core/responses.py get_current_account), so central
# mode could not be emulated under it. moto reads its default from
# moto.core.DEFAULT_ACCOUNT_ID, bound by value when a module imports it: set
# before moto.server is imported, it holds for every service.
# Each account's IAM is created with the AWS managed policies
# (MOTO_IAM_LOAD_MANAGED_POLICIES) in each of moto's seven partitions, and
# built again by every reset: 0.7 s an account each time, 22 s a reset after a
# 20-account test. The bench's accounts are all in the aws partition: only
# there are they loaded.
MOTO_SERVER = """
import sys
import moto.core
import moto.core.models
moto.core.DEFAULT_ACCOUNT_ID = moto.core.models.DEFAULT_ACCOUNT_ID = sys.argv.pop(1)
import moto.iam.models
load_aws_policies = moto.iam.models.IAMBackend._init_aws_policies
moto.iam.models.IAMBackend._init_aws_policies = lambda self: load_aws_policies(self) if self.region_name == "aws" else []
from moto.server import main
sys.exit(main())
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout_s=30.0, process=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up in {timeout_s}s")


def http_json(method, url, doc=None, timeout=10):
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body else None


class LocalAws:
    def __init__(self, log_dir=None):
        self.processes = []
        self._member_credentials = {}
        self.log_dir = Path(log_dir) if log_dir else None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.close)
        self.moto_port = free_port()
        moto_env = {k: v for k, v in os.environ.items() if k != "MOTO_ACCOUNT_ID"}
        moto_env["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        moto = self._spawn("moto", [sys.executable, "-c", MOTO_SERVER, ACCOUNT,
                                    "-H", "127.0.0.1", "-p", str(self.moto_port)], moto_env)
        self.moto_url = f"http://127.0.0.1:{self.moto_port}"
        self.double_port = free_port()
        double = self._spawn("double", [sys.executable, str(BENCH / "connect_profiles_double.py"),
                                        "--port", str(self.double_port), "--moto", self.moto_url, "--account", ACCOUNT],
                             os.environ)
        self.double_url = f"http://127.0.0.1:{self.double_port}"
        wait_http(f"{self.double_url}/_double/health", process=double)
        wait_http(f"{self.moto_url}/moto-api/", timeout_s=60, process=moto)

    def _spawn(self, name, argv, env):
        out = open(self.log_dir / f"{name}.log", "wb") if self.log_dir else subprocess.DEVNULL
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        self.processes.append(process)
        return process

    def sdk_env(self, via=None):
        """The environment that points an AWS SDK at this account, through the proxy at URL `via` if given."""
        moto_url, double_url = (via, via) if via else (self.moto_url, self.double_url)
        return {
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ENDPOINT_URL_CONNECT": double_url,
            "AWS_ENDPOINT_URL_CUSTOMER_PROFILES": double_url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }

    def client(self, service, account=None, region=None):
        """A client for moto, in the bench account, or in `account` through a role assumed there
        (moto's STS assumes any role ARN and checks no trust policy)."""
        credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        if account not in (None, ACCOUNT):
            credentials = self.credentials_in(account)
        return boto3.client(service, region_name=region or REGION, endpoint_url=self.moto_url, **credentials)

    def credentials_in(self, account):
        """Keyword arguments for a boto3 client that acts in `account`: a role assumed there, kept until a reset."""
        if account not in self._member_credentials:
            c = self.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
                                               RoleSessionName="bench-seeding")["Credentials"]
            self._member_credentials[account] = {"aws_access_key_id": c["AccessKeyId"],
                                                 "aws_secret_access_key": c["SecretAccessKey"],
                                                 "aws_session_token": c["SessionToken"]}
        return self._member_credentials[account]

    def put_state(self, state, account=None, region=None):
        """Puts the Connect/Customer Profiles double's state: of the bench account in every Region, or of
        `account` (in `region`, or every Region)."""
        query = "&".join(f"{k}={v}" for k, v in (("account", account), ("region", region)) if v)
        http_json("PUT", f"{self.double_url}/_double/state" + (f"?{query}" if query else ""), state)

    def double_calls(self, clear=False):
        """The Connect and Customer Profiles calls the double served (bench/connect_profiles_double.py)."""
        return http_json("DELETE" if clear else "GET", f"{self.double_url}/_double/calls")

    def reset(self):
        # moto resets every account it has seen: a few seconds after a test of many accounts.
        http_json("POST", f"{self.moto_url}/moto-api/reset", timeout=120)
        http_json("POST", f"{self.double_url}/_double/reset")
        # moto forgets assumed roles' keys on reset: an old key would act in the default account.
        self._member_credentials = {}

    def close(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes = []
