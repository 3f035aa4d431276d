"""The emulated account on loopback: moto server (IAM, KMS, SNS, SQS, STS)
and the Connect/Customer Profiles test double, each on a free port, torn
down on exit even when a test fails.

The guard reaches them through the standard SDK settings only:
AWS_ENDPOINT_URL (moto) and AWS_ENDPOINT_URL_CONNECT /
AWS_ENDPOINT_URL_CUSTOMER_PROFILES (the double), or all three at a
bench/fault_proxy.py in front of both.
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
ACCOUNT = "111122223333"  # MOTO_ACCOUNT_ID: the emulated account
REGION = "eu-west-2"


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


def http_json(method, url, doc=None):
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
    return json.loads(body) if body else None


class LocalAws:
    def __init__(self, log_dir=None):
        self.processes = []
        self.log_dir = Path(log_dir) if log_dir else None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.close)
        self.moto_port = free_port()
        moto_env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "MOTO_ACCOUNT_ID": ACCOUNT}
        moto = self._spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)], moto_env)
        self.moto_url = f"http://127.0.0.1:{self.moto_port}"
        self.double_port = free_port()
        double = self._spawn("double", [sys.executable, str(BENCH / "connect_profiles_double.py"), "--port", str(self.double_port)], os.environ)
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

    def client(self, service):
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.moto_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def reset(self):
        http_json("POST", f"{self.moto_url}/moto-api/reset")
        http_json("POST", f"{self.double_url}/_double/reset")

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
