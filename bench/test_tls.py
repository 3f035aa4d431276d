"""The guard over HTTPS, trusting AWS the way a Lambda on Amazon Linux 2023
does (bench/tls_front.py): a throwaway CA's root in an AL2023-shaped
certificate directory, found through SSL_CERT_FILE / SSL_CERT_DIR by
rustls-native-certs. With the CA trusted, a pass over TLS finds exactly what
it finds over plain HTTP; with a certificate from a CA the directory does not
hold, nothing is sent and the pass never reports a healthy account: the
calls it could not verify are CHECK_INCOMPLETE, or, when alerting is cut off
too, the invocation fails so Lambda retries it."""

import http.client
import json
import ssl
import time

import pytest

from conftest import OUT, binary, sample_event
from runtime_api import LambdaFunction
from scenarios import SCENARIOS, TOPIC_ARN, event_for, instance_arn, seed, sorted_alerts, spec_for
from test_e2e import check_alert, drain
from tls_front import SERVICES, TlsBench

SWEEP = json.loads(sample_event("scheduled-sweep.json"))


@pytest.fixture(scope="module")
def tls(proxy):
    with TlsBench(proxy.url) as bench:
        bench.rogue = bench.rogue_front()
        yield bench


def start(aws, tls, log_name, **routes):
    env = {**tls.sdk_env(aws, **routes), "ALERT_TOPIC_ARN": TOPIC_ARN, "CONNECT_API_RPS": "1000", "RUST_LOG": "info"}
    fn = LambdaFunction(binary("connect-slr-guard-lambda"), env, log_path=OUT / log_name)
    fn.env = env
    fn.wait_ready()
    return fn


@pytest.fixture(scope="module")
def over_tls(aws, tls):
    """The guard with every service behind the trusted front."""
    before = tls.front.total_handshakes
    fn = start(aws, tls, "lambda-tls.log")
    fn.handshakes_before = before
    yield fn
    fn.close()


def alerts_of(account, seeded, event, body, messages=None):
    """(rule, instance, resource) of each alert delivered; the raw messages appended to `messages` if given."""
    raw = drain(account.client("sqs"), seeded.queue_url)
    if messages is not None:
        messages += raw
    delivered = [check_alert(m, event) for m in raw]
    assert body["alerts_published"] == len(delivered), body
    return sorted_alerts(a[:3] for a in delivered)


def reset_counts(proxy, tls):
    proxy.set({})
    tls.front.reset_stats()
    tls.rogue.reset_stats()


def test_the_cert_dir_is_shaped_like_al2023(tls):
    root = tls.cert_dir.root
    bundle = root / "pki/ca-trust/extracted/pem/tls-ca-bundle.pem"
    assert tls.cert_dir.env["SSL_CERT_FILE"] == str(bundle)
    assert (root / "pki/tls/certs/ca-bundle.crt").resolve() == bundle.resolve()
    assert (root / "ssl/certs").is_symlink() and (root / "ssl/certs").resolve() == (root / "pki/tls/certs").resolve()
    assert sorted(p.name for p in (root / "ssl/certs").iterdir()) == ["ca-bundle.crt", "ca-bundle.trust.crt"]
    trust = (root / "pki/tls/certs/ca-bundle.trust.crt").read_text()
    assert trust.count("BEGIN TRUSTED CERTIFICATE") == tls.cert_dir.cert_count and "BEGIN CERTIFICATE" not in trust
    assert bundle.read_text().count("BEGIN CERTIFICATE") == tls.cert_dir.cert_count > 100
    assert tls.ca.root_pem.decode().strip() in bundle.read_text()


def test_the_front_keeps_connections_alive(tls):
    context = ssl.create_default_context(cafile=str(tls.cert_dir.bundle))
    conn = http.client.HTTPSConnection("localhost", tls.front.port, context=context, timeout=10)
    tls.front.reset_stats()
    for _ in range(3):
        conn.request("GET", "/_faults/counts")
        response = conn.getresponse()
        assert response.status == 200 and response.read()
    conn.close()
    time.sleep(0.1)
    stats = tls.front.stats()
    assert (stats["connections"], stats["handshakes"], stats["handshake_failures"]) == (1, 1, []), stats


@pytest.mark.parametrize("name", ["key-disabled", "stream-permission-missing"])
def test_a_pass_over_tls_finds_what_it_finds_over_http(over_tls, account, proxy, tls, name):
    scenario = SCENARIOS[name]
    seeded = seed(account, spec_for(name))
    reset_counts(proxy, tls)
    event = event_for(scenario, seeded, sample_event(scenario.event))
    ok, body = over_tls.invoke(event)
    assert ok, f"invocation failed: {body}"
    assert alerts_of(account, seeded, event, body) == scenario.resolve(seeded)
    # The guard knows no plain-HTTP endpoint: every call the proxy saw came through the front, over
    # connections this process opened (its pool keeps them from one test to the next).
    assert all(v.startswith("https://") for k, v in over_tls.env.items() if k.startswith("AWS_ENDPOINT_URL")), over_tls.env
    assert tls.front.stats()["handshake_failures"] == []
    assert tls.front.total_handshakes - over_tls.handshakes_before >= 3, "not one TLS connection per service"
    services = {service for service, _, _ in proxy.calls}
    assert {"connect", "iam", "kms", "sns"} <= services, services


def test_an_untrusted_connect_endpoint_is_refused_and_reported_incomplete(aws, account, proxy, tls):
    """Connect and Customer Profiles answer with a certificate from a CA the cert dir does not hold; the
    rest is trusted. The drift (a disabled key) cannot be seen, and the sweep says so instead of passing."""
    fn = start(aws, tls, "lambda-tls-rogue.log", connect_front=tls.rogue)
    try:
        seeded = seed(account, spec_for("key-disabled"))
        reset_counts(proxy, tls)
        ok, body = fn.invoke(SWEEP)
    finally:
        fn.close()
    assert ok, f"invocation failed: {body}"
    messages = []
    assert alerts_of(account, seeded, SWEEP, body, messages) == [("CHECK_INCOMPLETE", None, instance_arn("*"))]
    assert "UnknownIssuer" in messages[0]["Message"], "the alert should say why: " + messages[0]["Message"]
    rogue = tls.rogue.stats()
    assert rogue["handshakes"] == 0 and rogue["connections_with_data"] == 0, rogue
    assert rogue["handshake_failures"] and all("UNKNOWN_CA" in f for f in rogue["handshake_failures"]), rogue
    assert not [c for c in proxy.calls if c[0] in ("connect", "profile")], "a request crossed the untrusted front"


def test_an_untrusted_endpoint_for_everything_fails_the_invocation(aws, account, proxy, tls):
    """Every service behind the untrusted certificate: nothing can be read or alerted, so the invocation
    fails (Lambda retries it) and not one request is sent."""
    fn = start(aws, tls, "lambda-tls-rogue-all.log", front=tls.rogue)
    try:
        seed(account, spec_for("key-disabled"))
        reset_counts(proxy, tls)
        ok, body = fn.invoke(SWEEP)
    finally:
        fn.close()
    assert not ok, f"the pass succeeded with no endpoint it could trust: {body}"
    assert "invalid peer certificate: UnknownIssuer" in json.dumps(body), body
    rogue = tls.rogue.stats()
    assert rogue["handshakes"] == 0 and rogue["connections_with_data"] == 0 and rogue["handshake_failures"], rogue
    assert proxy.calls == [], proxy.calls


def test_every_service_the_guard_calls_has_its_own_port(tls):
    env = tls.front.service_env()
    ports = {env[f"AWS_ENDPOINT_URL_{s}"] for s in SERVICES}
    assert len(ports) == len(SERVICES) and env["AWS_ENDPOINT_URL"] not in ports
