"""Shared fixtures for the end-to-end bench: one emulated account and one
real Lambda process per test session, reset and reseeded per test."""

import json
import os
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def aws():
    local = LocalAws(log_dir=OUT)
    yield local
    local.close()


@pytest.fixture(scope="session")
def guard_env(aws):
    return {**aws.sdk_env(), "ALERT_TOPIC_ARN": TOPIC_ARN, "CONNECT_API_RPS": "1000", "RUST_LOG": "info"}


@pytest.fixture(scope="session")
def function(guard_env):
    fn = LambdaFunction(binary("connect-slr-guard-lambda"), guard_env, log_path=OUT / "lambda.log")
    fn.wait_ready()
    yield fn
    fn.close()


@pytest.fixture()
def account(aws):
    aws.reset()
    return aws


def sample_event(name):
    return (REPO / "events" / name).read_text()


def sample_events():
    return sorted(p.name for p in (REPO / "events").glob("*.json"))


def load(text):
    return json.loads(text)
