"""Fault injection: the real Lambda against the emulated account through a
fault-injecting proxy. For every fault the pass either still raises the
expected alert, or reports CHECK_INCOMPLETE with the reason for what it
could not verify, or (when alerting itself fails) fails the invocation so
Lambda retries it. No finding is ever lost silently."""

import json

import pytest

from conftest import OUT, binary, sample_event
from runtime_api import LambdaFunction
from local_aws import ACCOUNT, REGION
from scenarios import INSTANCE_ID, ROLE_ARN, SCENARIOS, instance_arn, seed, sorted_alerts, spec_for
from test_e2e import check_alert, drain

SWEEP = json.loads(sample_event("scheduled-sweep.json"))


@pytest.fixture(scope="module")
def faulty(guard_env):
    """A Lambda of its own, so that these faults' retries and logs stay apart from the other tests'."""
    fn = LambdaFunction(binary("connect-slr-guard-lambda"), guard_env, log_path=OUT / "lambda-faults.log")
    fn.wait_ready()
    yield fn
    fn.close()


@pytest.fixture()
def drifted(account):
    """The key-disabled account: one CRITICAL drift the pass must not lose."""
    return seed(account, spec_for("key-disabled"))


def run(faulty, account, seeded, event=SWEEP, timeout_s=60.0):
    ok, body = faulty.invoke(event, timeout_s=timeout_s)
    assert ok, f"invocation failed: {body}"
    alerts = [check_alert(m, event) for m in drain(account.client("sqs"), seeded.queue_url)]
    assert body["alerts_published"] == len(alerts)
    return sorted_alerts(a[:3] for a in alerts)


def expected_drift(seeded):
    return SCENARIOS["key-disabled"].resolve(seeded, sweep=True)


@pytest.mark.parametrize("service", ["connect", "profile", "iam", "kms"])
@pytest.mark.parametrize("mode", ["throttle", "5xx", "reset"])
def test_transient_faults_are_retried_and_the_drift_still_found(faulty, account, proxy, drifted, service, mode):
    proxy.set({service: {"mode": mode, "first": 2}})
    alerts = run(faulty, account, drifted)
    assert alerts == expected_drift(drifted)
    counts = proxy.counts_of(service)
    assert counts["faulted"] == 2 and counts["requests"] > 2, counts


@pytest.mark.parametrize("mode,reason", [("throttle", "Throttling"), ("5xx", "Internal"), ("reset", "dispatch failure")])
def test_connect_storm_is_reported_incomplete(faulty, account, proxy, drifted, mode, reason):
    proxy.set({"connect": {"mode": mode}})
    alerts = run(faulty, account, drifted)
    assert alerts == [("CHECK_INCOMPLETE", None, instance_arn("*"))]
    assert proxy.counts_of("connect")["requests"] == 3, "the SDK's standard retries: 3 attempts"


def test_kms_storm_leaves_the_role_verified_and_the_keys_incomplete(faulty, account, proxy, drifted):
    proxy.set({"kms": {"mode": "5xx"}})
    alerts = run(faulty, account, drifted)
    assert alerts == sorted(("CHECK_INCOMPLETE", instance_arn(INSTANCE_ID), k)
                            for k in (drifted.domain_key, drifted.storage_key))


def test_iam_storm_reports_the_role_incomplete(faulty, account, proxy, drifted):
    proxy.set({"iam": {"mode": "throttle"}})
    alerts = run(faulty, account, drifted)
    # The unusable key does not depend on the role: it is still reported.
    assert alerts == sorted(expected_drift(drifted) + [("CHECK_INCOMPLETE", instance_arn(INSTANCE_ID), ROLE_ARN)])


def test_slow_answers_past_the_sdk_timeouts_are_incomplete(faulty, account, proxy, drifted):
    proxy.set({"kms": {"mode": "slow", "delay_ms": 10_500}})
    alerts = run(faulty, account, drifted, timeout_s=120)
    assert alerts == sorted(("CHECK_INCOMPLETE", instance_arn(INSTANCE_ID), k)
                            for k in (drifted.domain_key, drifted.storage_key))


def test_the_deadline_stops_new_reads_and_reports_what_was_left(faulty, account, proxy, drifted):
    proxy.set({"profile": {"mode": "slow", "delay_ms": 4000}})
    # 8 s to the deadline: reads stop 2 s before it, alerts still go out:
    # one page for the instance, one for the domains the sweep could not list.
    alerts = run(faulty, account, drifted, timeout_s=8)
    assert alerts == sorted_alerts([
        ("CHECK_INCOMPLETE", instance_arn(INSTANCE_ID), instance_arn(INSTANCE_ID)),
        ("CHECK_INCOMPLETE", None, f"arn:aws:profile:{REGION}:{ACCOUNT}:domains/*"),
    ])


@pytest.mark.parametrize("mode", ["throttle", "5xx", "reset"])
def test_sns_unavailable_fails_the_invocation_so_lambda_retries(faulty, account, proxy, drifted, mode):
    proxy.set({"sns": {"mode": mode}})
    ok, body = faulty.invoke(SWEEP)
    assert not ok and body["errorType"] == "AlertDeliveryFailed", body
    assert drain(account.client("sqs"), drifted.queue_url) == []
    # Lambda's retry, once SNS is back, delivers the alert: nothing lost.
    proxy.set({})
    alerts = run(faulty, account, drifted)
    assert alerts == expected_drift(drifted)


def test_logs_hold_no_credentials_or_policy_documents(faulty):
    log = (OUT / "lambda-faults.log").read_text()
    assert "testing" not in log.replace("AWS_ACCESS_KEY_ID", "")  # the secret key of the bench
    assert "Statement" not in log and "sts:AssumeRole" not in log
