"""A fault-injecting HTTP proxy for the local bench (test support code).

It sits between the guard and the emulated account: requests for Amazon
Connect and Customer Profiles go to the test double, everything else to moto
(the service is read from the SigV4 `Credential=.../<service>/aws4_request`
scope, as AWS routes it). Per service, it can answer with throttling,
server errors or access denied in that service's real wire format, reset the
connection, or delay the answer; each fault can be permanent or limited to
the first N requests (to show the SDK's retries recovering), and limited to
the requests whose path or body names something (`match`: an instance id,
say).

Every call is logged as (service, operation, request), so the benchmark can
count calls per operation and spot a call made twice in one pass.

Control: PUT /_faults {"iam": {"mode": "throttle", "first": 2}, "kms": {"mode": "slow", "delay_ms": 11000},
                       "connect": {"mode": "deny", "match": "<instance id>"}}
         GET /_faults/counts -> {"iam": {"requests": 7, "faulted": 2}, ...};  DELETE /_faults
"""

import json
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

SERVICE_RE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
DOUBLE_SERVICES = {"connect", "profile"}

QUERY_XML = ('<ErrorResponse xmlns="https://{svc}.amazonaws.com/doc/2010-05-08/"><Error><Type>{kind}</Type>'
             "<Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>")


# mode -> service -> (status, code), as each service answers.
ERRORS = {
    "throttle": {"iam": (400, "Throttling"), "sns": (400, "Throttling"), "sts": (400, "Throttling"),
                 "kms": (400, "ThrottlingException"), "connect": (429, "ThrottlingException"),
                 "profile": (429, "ThrottlingException")},
    "5xx": {"iam": (500, "ServiceFailure"), "sns": (500, "InternalError"), "sts": (500, "InternalError"),
            "kms": (500, "KMSInternalException"), "connect": (500, "InternalServiceException"),
            "profile": (500, "InternalServerException")},
    "deny": {"iam": (403, "AccessDenied"), "sns": (403, "AuthorizationError"), "sts": (403, "AccessDenied"),
             "kms": (400, "AccessDeniedException"), "connect": (403, "AccessDeniedException"),
             "profile": (403, "AccessDeniedException")},
}
MESSAGES = {"throttle": "Rate exceeded", "5xx": "Injected server error",
            "deny": "User is not authorized to perform this action (injected)"}


def error_response(service, mode):
    """(status, headers, body) of a throttling, server or access-denied error as `service` sends it."""
    status, code = ERRORS[mode][service]
    message = MESSAGES[mode]
    if service in ("iam", "sns", "sts"):
        body = QUERY_XML.format(svc=service, kind="Receiver" if status >= 500 else "Sender", code=code, message=message)
        return status, {"Content-Type": "text/xml"}, body.encode()
    if service == "kms":
        body = json.dumps({"__type": code, "message": message})
        return status, {"Content-Type": "application/x-amz-json-1.1"}, body.encode()
    body = json.dumps({"message": message})
    return status, {"Content-Type": "application/json", "X-Amzn-ErrorType": code}, body.encode()


REST_OPERATIONS = [
    ("GET", re.compile(r"^/instance$"), "ListInstances"),
    ("GET", re.compile(r"^/instance/[^/]+$"), "DescribeInstance"),
    ("GET", re.compile(r"^/instance/[^/]+/storage-configs$"), "ListInstanceStorageConfigs"),
    ("POST", re.compile(r"^/integrations$"), "ListAccountIntegrations"),
    ("GET", re.compile(r"^/domains$"), "ListDomains"),
    ("GET", re.compile(r"^/domains/[^/]+$"), "GetDomain"),
]


def rest_operation(method, path):
    for verb, pattern, name in REST_OPERATIONS:
        if method == verb and pattern.match(path):
            return name
    return f"{method} {path}"


class FaultProxy:
    def __init__(self, moto_url, double_url):
        self.upstreams = {"moto": moto_url, "double": double_url}
        self.faults = {}
        self.counts = {}
        self.calls = []
        self.call_times = []  # (service, operation, time.monotonic()) of each request
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: with Nagle on, each reply on a
            # kept-alive connection waits ~40 ms for the client's delayed ACK.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _send(self, status, headers, body):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.startswith("/_faults"):
                    return self._send(*proxy.control(self.command, self.path, body))
                match = SERVICE_RE.search(self.headers.get("Authorization", ""))
                service = match.group(1) if match else "unknown"
                proxy.record(service, self.command, self.path, self.headers, body)
                fault = proxy.take_fault(service, unquote(self.path) + body.decode(errors="replace"))
                if fault and fault["mode"] == "reset":
                    # RST instead of FIN: the client sees "connection reset by peer".
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault and fault["mode"] in ERRORS:
                    return self._send(*error_response(service, fault["mode"]))
                if fault and fault["mode"] == "slow":
                    time.sleep(fault.get("delay_ms", 0) / 1000)
                upstream = proxy.upstreams["double" if service in DOUBLE_SERVICES else "moto"]
                return self._send(*proxy.forward(upstream, self.command, self.path, dict(self.headers), body))

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, service, method, path, headers, body):
        """Logs one call as (service, operation, request) for call counting."""
        target = headers.get("X-Amz-Target")
        if service in DOUBLE_SERVICES:
            operation = rest_operation(method, urlsplit(path).path)
        elif target:
            operation = target.rsplit(".", 1)[-1]
        else:
            action = parse_qs(body.decode(errors="replace")).get("Action")
            operation = action[0] if action else f"{method} {urlsplit(path).path}"
        with self.lock:
            self.calls.append((service, operation, f"{method} {path} {body!r}"))
            self.call_times.append((service, operation, time.monotonic()))

    def take_fault(self, service, request):
        """The fault to inject into this request of `service`, if any; `request` is its path and body."""
        with self.lock:
            count = self.counts.setdefault(service, {"requests": 0, "faulted": 0})
            count["requests"] += 1
            fault = self.faults.get(service) or self.faults.get("*")
            if not fault or fault.get("match", "") not in request:
                return None
            first = fault.get("first")
            if first is not None and count["faulted"] >= first:
                return None
            count["faulted"] += 1
            return fault

    def control(self, method, path, body):
        with self.lock:
            if method == "PUT" and path == "/_faults":
                self.faults = json.loads(body or b"{}")
                self.counts, self.calls, self.call_times = {}, [], []
            elif method == "DELETE" and path == "/_faults":
                self.faults, self.counts, self.calls, self.call_times = {}, {}, [], []
            elif method == "GET" and path == "/_faults/counts":
                return 200, {"Content-Type": "application/json"}, json.dumps(self.counts).encode()
            else:
                return 404, {}, b""
        return 204, {}, b""

    @staticmethod
    def forward(upstream, method, path, headers, body):
        headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
        req = urllib.request.Request(upstream + path, data=body if method in ("POST", "PUT") else None,
                                     method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "x-amzn-errortype", "x-amzn-requestid")}, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, {k: v for k, v in err.headers.items() if k.lower() in ("content-type", "x-amzn-errortype", "x-amzn-requestid")}, err.read()

    def set(self, faults):
        self.control("PUT", "/_faults", json.dumps(faults).encode())

    def counts_of(self, service):
        return self.counts.get(service, {"requests": 0, "faulted": 0})

    def close(self):
        self.server.shutdown()
        self.server.server_close()
