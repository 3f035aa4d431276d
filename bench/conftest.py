"""Shared fixtures for the end-to-end bench: one emulated account, one
fault proxy in front of it and one real Lambda process per test session,
reset and reseeded per test."""

import functools
import json
import os
import subprocess
from pathlib import Path

import pytest

from fault_proxy import FaultProxy
from local_aws import LocalAws
from runtime_api import LambdaFunction
from scenarios import TOPIC_ARN

REPO = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/connect-slr-guard/target"))
OUT = REPO / "bench" / "out"


def binary(name):
    path = Path(os.environ.get("GUARD_BIN_DIR", TARGET / "debug")) / name
    if not path.exists():
        pytest.exit(f"{path} not built: run `cargo build` first (scripts/test.sh does)", returncode=2)
    return str(path)


@functools.cache
def rule_catalogue():
    """The guard's rule catalogue (`connect-slr-guard rules --format json`), by rule id."""
    result = subprocess.run([binary("connect-slr-guard"), "rules", "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"`connect-slr-guard rules --format json` failed: {result.stderr}"
    return {entry["rule"]: entry for entry in json.loads(result.stdout)}


@pytest.fixture(scope="session")
def catalogue():
    return rule_catalogue()


@pytest.fixture(scope="session")
def aws():
    local = LocalAws(log_dir=OUT)
    yield local
    local.close()


@pytest.fixture(scope="session")
def proxy(aws):
    """The guard reaches the account through it, so that a test or scenario can inject faults."""
    p = FaultProxy(aws.moto_url, aws.double_url)
    yield p
    p.close()


@pytest.fixture(scope="session")
def guard_env(aws, proxy):
    return {**aws.sdk_env(via=proxy.url), "ALERT_TOPIC_ARN": TOPIC_ARN, "CONNECT_API_RPS": "1000", "RUST_LOG": "info"}


@pytest.fixture(scope="session")
def function(guard_env):
    fn = LambdaFunction(binary("connect-slr-guard-lambda"), guard_env, log_path=OUT / "lambda.log")
    fn.wait_ready()
    yield fn
    fn.close()


@pytest.fixture()
def account(aws, proxy):
    aws.reset()
    proxy.set({})
    return aws


def sample_event(name):
    return (REPO / "events" / name).read_text()


def sample_events():
    return sorted(p.name for p in (REPO / "events").glob("*.json"))
