#!/usr/bin/env python3
"""TEST DOUBLE for the few Amazon Connect and Customer Profiles read operations
that connect-slr-guard calls.

This is NOT an emulator of Amazon Connect or Customer Profiles. It serves only:

  Amazon Connect (restJson1, signing name "connect")
    ListInstances               GET  /instance?maxResults=&nextToken=
    DescribeInstance            GET  /instance/{InstanceId}
    ListInstanceStorageConfigs  GET  /instance/{InstanceId}/storage-configs?resourceType=&maxResults=&nextToken=
  Customer Profiles (restJson1, signing name "profile")
    ListAccountIntegrations     POST /integrations?max-results=&next-token=   body {"Uri": "..."}
    GetDomain                   GET  /domains/{DomainName}
    ListDomains                 GET  /domains?max-results=&next-token=

following the real restJson1 wire format of the AWS API reference (and the
botocore / aws-sdk-rust models): JSON bodies with the model's member names,
timestamps as epoch seconds in JSON numbers, errors as HTTP status +
`X-Amzn-ErrorType: <Code>` header + JSON body {"message", "Message"}.
Requests are not authenticated; signatures are ignored. Both services are
served on one port (their paths do not overlap), so
AWS_ENDPOINT_URL_CONNECT and AWS_ENDPOINT_URL_CUSTOMER_PROFILES can both point
at it. Faults (throttling, errors, access denied, delays) are not its job:
bench/fault_proxy.py injects them in front of it.

Page sizes: maxResults is capped at the model maximum (ListInstances and
ListInstanceStorageConfigs 10, Profiles lists 100) and defaults to that
maximum. NextToken values are opaque strings bound to the operation.

State lives in memory and is replaced as a whole by `PUT /_double/state`:

  {"instances": [{"Id", "Arn", "IdentityManagementType", "InstanceAlias",
                  "CreatedTime" (epoch seconds), "ServiceRole", "InstanceStatus",
                  "InboundCallsEnabled", "OutboundCallsEnabled", ...}],
   "storage_configs": {"<instance id>": {"<RESOURCE_TYPE>": [{"AssociationId",
                  "StorageType", "S3Config"?, "KinesisVideoStreamConfig"?,
                  "KinesisStreamConfig"?, "KinesisFirehoseConfig"?}]}},
   "domains": [{"DomainName", "DefaultExpirationDays", "DefaultEncryptionKey"?,
                "CreatedAt", "LastUpdatedAt", "Tags"}],
   "integrations": [{"DomainName", "Uri", "ObjectTypeName", "CreatedAt", "LastUpdatedAt"}]}

Timestamps are epoch seconds. Missing CreatedAt/LastUpdatedAt default to
1700000000 (the models mark them required).

Accounts and Regions. Each account and Region has its own state, as in AWS.
The Region is the request's SigV4 scope (`Credential=<key>/<date>/<region>/...`).
The account is the caller's: with `--moto URL`, the double asks moto's STS
who the request's access key id belongs to (GetCallerIdentity with that key,
which moto resolves without checking the signature: an assumed role's keys
act in the role's account), once per key. Without `--moto`, or for keys
moto does not know, the caller is the default account (`--account`, the
bench's account). A state is put for an account and a Region
(`PUT /_double/state?account=<id>&region=<region>`), for every Region of an
account (`?account=<id>`), or, with neither, for every Region of the default
account: what every single-account test does. An account and Region with no
state of its own has the account's state for every Region, if any, or none.
Instance ARNs in a state put for an account (and a Region) must name it.

Control endpoints (not AWS operations): PUT /_double/state[?account=&region=],
POST /_double/reset (empties every state and the call log), GET /_double/health,
GET /_double/calls (every operation served since the last reset or
DELETE /_double/calls: {"account", "region", "operation", "target" (the
instance id, domain name or integration URI the call names, if any),
"access_key" (the caller's access key id), "time" (time.monotonic() of this
process), "status"}).

Usage: python bench/connect_profiles_double.py --port 0 [--moto URL] [--account ID] [--verbose]
Prints `PORT=<n>` on stdout once listening. Python stdlib only.
"""

import argparse
import base64
import copy
import json
import re
import signal
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

# --------------------------------------------------------------------------
# Model facts (botocore connect 2017-08-08 / customer-profiles 2020-08-15)
# --------------------------------------------------------------------------

INSTANCE_SUMMARY_MEMBERS = (
    "Id", "Arn", "IdentityManagementType", "InstanceAlias", "CreatedTime",
    "ServiceRole", "InstanceStatus", "InboundCallsEnabled",
    "OutboundCallsEnabled", "InstanceAccessUrl",
)
INSTANCE_MEMBERS = INSTANCE_SUMMARY_MEMBERS + ("StatusReason", "Tags")
STORAGE_CONFIG_MEMBERS = (
    "AssociationId", "StorageType", "S3Config", "KinesisVideoStreamConfig",
    "KinesisStreamConfig", "KinesisFirehoseConfig",
)
STORAGE_RESOURCE_TYPES = frozenset((
    "CHAT_TRANSCRIPTS", "CALL_RECORDINGS", "SCHEDULED_REPORTS", "MEDIA_STREAMS",
    "CONTACT_TRACE_RECORDS", "AGENT_EVENTS", "REAL_TIME_CONTACT_ANALYSIS_SEGMENTS",
    "ATTACHMENTS", "CONTACT_EVALUATIONS", "SCREEN_RECORDINGS",
    "REAL_TIME_CONTACT_ANALYSIS_CHAT_SEGMENTS",
    "REAL_TIME_CONTACT_ANALYSIS_VOICE_SEGMENTS", "EMAIL_MESSAGES",
))
GET_DOMAIN_MEMBERS = (
    "DomainName", "DefaultExpirationDays", "DefaultEncryptionKey",
    "DeadLetterQueueUrl", "Stats", "Matching", "RuleBasedMatching", "DataStore",
    "CreatedAt", "LastUpdatedAt", "Tags",
)
LIST_DOMAIN_ITEM_MEMBERS = ("DomainName", "CreatedAt", "LastUpdatedAt", "Tags")
INTEGRATION_ITEM_MEMBERS = (
    "DomainName", "Uri", "ObjectTypeName", "CreatedAt", "LastUpdatedAt", "Tags",
    "ObjectTypeNames", "WorkflowId", "IsUnstructured", "RoleArn",
    "EventTriggerNames", "Scope",
)

# Error codes differ per service (model shape names).
ERRORS = {
    "connect": {
        "not_found": ("ResourceNotFoundException", 404),
        "bad_request": ("InvalidRequestException", 400),
    },
    "profiles": {
        "not_found": ("ResourceNotFoundException", 404),
        "bad_request": ("BadRequestException", 400),
    },
}

DEFAULT_TIMESTAMP = 1700000000
STATE_KEYS = ("instances", "storage_configs", "domains", "integrations")


class ApiError(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


class StateError(ValueError):
    pass


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------

def empty_state():
    return {"instances": [], "storage_configs": {}, "domains": [], "integrations": []}


def _timestamp(value, where):
    if value is None:
        return DEFAULT_TIMESTAMP
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StateError(f"{where}: timestamp must be epoch seconds")
    return value


def _require(obj, keys, where):
    if not isinstance(obj, dict):
        raise StateError(f"{where}: expected an object")
    for key in keys:
        if key not in obj:
            raise StateError(f"{where}: missing required member {key!r}")


def normalize_state(doc):
    """Validate a state document and return a normalized deep copy."""
    if not isinstance(doc, dict):
        raise StateError("state: expected a JSON object")
    unknown = set(doc) - set(STATE_KEYS)
    if unknown:
        raise StateError(f"state: unknown keys {sorted(unknown)} (known: {list(STATE_KEYS)})")
    doc = copy.deepcopy(doc)
    state = empty_state()

    instances = doc.get("instances") or []
    if not isinstance(instances, list):
        raise StateError("instances: expected a list")
    seen = set()
    for i, inst in enumerate(instances):
        where = f"instances[{i}]"
        _require(inst, ("Id", "Arn"), where)
        if inst["Id"] in seen:
            raise StateError(f"{where}: duplicate Id {inst['Id']!r}")
        seen.add(inst["Id"])
        if "CreatedTime" in inst:
            inst["CreatedTime"] = _timestamp(inst["CreatedTime"], where + ".CreatedTime")
        state["instances"].append(inst)

    storage = doc.get("storage_configs") or {}
    if not isinstance(storage, dict):
        raise StateError("storage_configs: expected an object keyed by instance id")
    for inst_id, by_type in storage.items():
        if not isinstance(by_type, dict):
            raise StateError(f"storage_configs[{inst_id!r}]: expected an object keyed by resource type")
        for rtype, configs in by_type.items():
            where = f"storage_configs[{inst_id!r}][{rtype!r}]"
            if rtype not in STORAGE_RESOURCE_TYPES:
                raise StateError(f"{where}: unknown resource type")
            if not isinstance(configs, list):
                raise StateError(f"{where}: expected a list")
            for j, cfg in enumerate(configs):
                _require(cfg, ("StorageType",), f"{where}[{j}]")
    state["storage_configs"] = storage

    domains = doc.get("domains") or []
    if not isinstance(domains, list):
        raise StateError("domains: expected a list")
    names = set()
    for i, dom in enumerate(domains):
        where = f"domains[{i}]"
        _require(dom, ("DomainName",), where)
        if dom["DomainName"] in names:
            raise StateError(f"{where}: duplicate DomainName {dom['DomainName']!r}")
        names.add(dom["DomainName"])
        for key in ("CreatedAt", "LastUpdatedAt"):
            dom[key] = _timestamp(dom.get(key), f"{where}.{key}")
        state["domains"].append(dom)

    integrations = doc.get("integrations") or []
    if not isinstance(integrations, list):
        raise StateError("integrations: expected a list")
    for i, item in enumerate(integrations):
        where = f"integrations[{i}]"
        _require(item, ("DomainName", "Uri"), where)
        for key in ("CreatedAt", "LastUpdatedAt"):
            item[key] = _timestamp(item.get(key), f"{where}.{key}")
        state["integrations"].append(item)
    return state


ACCOUNT_RE = re.compile(r"^\d{12}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
SCOPE_RE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/[^/]+/aws4_request")


def check_arns(state, account, region):
    """A state put for an account (and a Region) describes instances there."""
    for i, inst in enumerate(state["instances"]):
        parts = str(inst["Arn"]).split(":")
        if len(parts) < 6 or parts[4] != account or (region is not None and parts[3] != region):
            raise StateError(f"instances[{i}].Arn {inst['Arn']!r} is not in account {account}"
                             + (f", Region {region}" if region else ""))


class Store:
    """The states by (account, region); region None: every Region of the account."""

    def __init__(self, default_account=None):
        self.lock = threading.Lock()
        self.default_account = default_account
        self.states = {}
        self.calls = []

    @property
    def state(self):  # the default account's state for every Region, as before accounts
        with self.lock:
            return self.states.get((self.default_account, None), empty_state())

    def put(self, account, region, state):
        with self.lock:
            self.states[(account or self.default_account, region)] = state

    def reset(self):
        with self.lock:
            self.states, self.calls = {}, []

    def state_for(self, account, region):
        """The state an account and Region's caller sees (never mutated: a PUT replaces it whole)."""
        with self.lock:
            return self.states.get((account, region)) or self.states.get((account, None)) or empty_state()

    def snapshot(self):
        return copy.deepcopy(self.state)

    def record(self, call):
        with self.lock:
            self.calls.append(call)

    def call_log(self, clear=False):
        with self.lock:
            calls = list(self.calls)
            if clear:
                self.calls = []
            return calls


class Accounts:
    """The caller's account, from the request's access key id, as moto's STS
    resolves it; cached per key."""

    def __init__(self, moto_url, default_account):
        self.moto_url = moto_url
        self.default_account = default_account
        self.cache = {}
        self.lock = threading.Lock()

    def of(self, access_key):
        if not self.moto_url or not access_key:
            return self.default_account
        with self.lock:
            if access_key in self.cache:
                return self.cache[access_key]
        # moto reads the key from the Authorization header and checks no signature.
        req = urllib.request.Request(
            self.moto_url + "/", data=b"Action=GetCallerIdentity&Version=2011-06-15", method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/20240101/us-east-1/sts/aws4_request, "
                                      "SignedHeaders=host, Signature=0"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            found = re.search(rb"<Account>(\d{12})</Account>", resp.read())
        if not found:
            raise RuntimeError(f"moto did not name the account of access key {access_key}")
        account = found.group(1).decode()
        with self.lock:
            self.cache[access_key] = account
        return account

    def forget(self):
        with self.lock:
            self.cache = {}


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def pick(obj, members):
    return {k: obj[k] for k in members if k in obj and obj[k] is not None}


def encode_token(operation, offset):
    raw = json.dumps({"op": operation, "offset": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(operation, token):
    try:
        padded = token + "=" * (-len(token) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if doc.get("op") != operation or not isinstance(doc.get("offset"), int) or doc["offset"] < 0:
            raise ValueError
        return doc["offset"]
    except Exception:
        raise ApiError("bad_request", f"Invalid NextToken for {operation}: {token!r}") from None


def page_size(query, param, maximum, operation):
    values = query.get(param)
    if not values:
        return maximum
    try:
        n = int(values[0])
    except ValueError:
        raise ApiError("bad_request", f"{operation}: {param} must be an integer, got {values[0]!r}") from None
    if n < 1 or n > maximum:
        raise ApiError("bad_request", f"{operation}: {param} must be between 1 and {maximum}, got {n}")
    return n


def paginate(items, query, operation, max_param, token_param, maximum):
    size = page_size(query, max_param, maximum, operation)
    token = (query.get(token_param) or [None])[0]
    offset = decode_token(operation, token) if token else 0
    page = items[offset:offset + size]
    nxt = offset + size
    return page, (encode_token(operation, nxt) if nxt < len(items) else None)


def find_instance(state, ident):
    for inst in state["instances"]:
        if inst.get("Id") == ident or inst.get("Arn") == ident:
            return inst
    return None


# --------------------------------------------------------------------------
# Operations: each takes (state, match_groups, query, body) and returns a dict
# --------------------------------------------------------------------------

def _connect_instance(state, ident):
    inst = find_instance(state, ident)
    if inst is None:
        raise ApiError("not_found", f"Instance {ident} not found")
    return inst


def op_list_instances(state, parts, query, body):
    items = [pick(i, INSTANCE_SUMMARY_MEMBERS) for i in state["instances"]]
    page, nxt = paginate(items, query, "ListInstances", "maxResults", "nextToken", 10)
    out = {"InstanceSummaryList": page}
    if nxt:
        out["NextToken"] = nxt
    return out


def op_describe_instance(state, parts, query, body):
    inst = _connect_instance(state, parts[0])
    return {"Instance": pick(inst, INSTANCE_MEMBERS)}


def op_list_instance_storage_configs(state, parts, query, body):
    rtype = (query.get("resourceType") or [None])[0]
    if not rtype:
        raise ApiError("bad_request", "ListInstanceStorageConfigs: resourceType is required")
    if rtype not in STORAGE_RESOURCE_TYPES:
        raise ApiError("bad_request", f"ListInstanceStorageConfigs: invalid resourceType {rtype!r}")
    inst = _connect_instance(state, parts[0])
    by_type = state["storage_configs"].get(inst["Id"]) or state["storage_configs"].get(inst["Arn"]) or {}
    items = [pick(c, STORAGE_CONFIG_MEMBERS) for c in by_type.get(rtype, [])]
    page, nxt = paginate(items, query, "ListInstanceStorageConfigs", "maxResults", "nextToken", 10)
    out = {"StorageConfigs": page}
    if nxt:
        out["NextToken"] = nxt
    return out


def op_list_account_integrations(state, parts, query, body):
    if body is None or not isinstance(body, dict):
        raise ApiError("bad_request", "ListAccountIntegrations: request body must be a JSON object")
    uri = body.get("Uri")
    if not isinstance(uri, str) or not uri:
        raise ApiError("bad_request", "ListAccountIntegrations: Uri is required")
    items = [pick(i, INTEGRATION_ITEM_MEMBERS) for i in state["integrations"] if i.get("Uri") == uri]
    page, nxt = paginate(items, query, "ListAccountIntegrations", "max-results", "next-token", 100)
    out = {"Items": page}
    if nxt:
        out["NextToken"] = nxt
    return out


def op_get_domain(state, parts, query, body):
    name = parts[0]
    for dom in state["domains"]:
        if dom["DomainName"] == name:
            return pick(dom, GET_DOMAIN_MEMBERS)
    raise ApiError("not_found", f"Domain {name} not found")


def op_list_domains(state, parts, query, body):
    items = [pick(d, LIST_DOMAIN_ITEM_MEMBERS) for d in state["domains"]]
    page, nxt = paginate(items, query, "ListDomains", "max-results", "next-token", 100)
    out = {"Items": page}
    if nxt:
        out["NextToken"] = nxt
    return out


def route(method, segments):
    """Return (service, operation, handler, path_params) or None."""
    n = len(segments)
    if method == "GET" and n >= 1 and segments[0] == "instance":
        if n == 1:
            return "connect", "ListInstances", op_list_instances, []
        if n == 2:
            return "connect", "DescribeInstance", op_describe_instance, [segments[1]]
        if n == 3 and segments[2] == "storage-configs":
            return "connect", "ListInstanceStorageConfigs", op_list_instance_storage_configs, [segments[1]]
    if method == "POST" and segments == ["integrations"]:
        return "profiles", "ListAccountIntegrations", op_list_account_integrations, []
    if method == "GET" and n >= 1 and segments[0] == "domains":
        if n == 1:
            return "profiles", "ListDomains", op_list_domains, []
        if n == 2:
            return "profiles", "GetDomain", op_get_domain, [segments[1]]
    return None


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, each reply on a
    # kept-alive connection waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server_version = "connect-profiles-double/1"
    store = None  # set in main()
    accounts = None  # set in main()
    verbose = False

    def log_message(self, fmt, *args):  # quiet unless --verbose
        if self.verbose:
            sys.stderr.write("double: %s - %s\n" % (self.address_string(), fmt % args))

    # One entry point for every method.
    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0] or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        if not length:
            return b""
        return self.rfile.read(int(length))

    def _send(self, status, payload, error_code=None):
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error_code:
            self.send_header("X-Amzn-ErrorType", error_code)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error(self, code, status, message):
        self._send(status, {"message": message, "Message": message}, error_code=code)

    def _dispatch(self):
        try:
            raw = self._read_body()
        except Exception:
            self.close_connection = True
            self._send_error("BadRequestException", 400, "could not read request body")
            return
        try:
            split = urlsplit(self.path)
            path = split.path
            query = parse_qs(split.query, keep_blank_values=True)
            if path.startswith("/_double/") or path == "/_double":
                self._control(path, raw)
                return
            segments = [unquote(s) for s in path.split("/") if s != ""]
            self._operation(path, segments, query, raw)
        except Exception as exc:  # never crash the server thread
            try:
                self._send_error("InternalFailure", 500, f"double internal error: {exc!r}")
            except Exception:
                pass

    def _control(self, path, raw):
        store = self.store
        method = self.command
        query = parse_qs(urlsplit(self.path).query)
        if path == "/_double/state" and method == "PUT":
            account = (query.get("account") or [None])[0]
            region = (query.get("region") or [None])[0]
            try:
                if account is not None and not ACCOUNT_RE.match(account):
                    raise StateError(f"account {account!r}: expected 12 digits")
                if region is not None and (account is None or not REGION_RE.match(region)):
                    raise StateError(f"region {region!r}: expected a Region name, with an account")
                new_state = normalize_state(json.loads(raw.decode("utf-8") or "null"))
                if account is not None:
                    check_arns(new_state, account, region)
            except (ValueError, UnicodeDecodeError) as exc:
                self._send_error("BadRequestException", 400, f"invalid state document: {exc}")
                return
            store.put(account, region, new_state)
            self._send(200, new_state)
        elif path == "/_double/reset" and method == "POST":
            store.reset()
            self.accounts.forget()
            self._send(200, {"reset": True})
        elif path == "/_double/health" and method == "GET":
            self._send(200, {"ok": True})
        elif path == "/_double/calls" and method in ("GET", "DELETE"):
            self._send(200, store.call_log(clear=method == "DELETE"))
        else:
            self._send_error("UnknownOperationException", 404,
                             f"unknown double control request {method} {path}")

    def _operation(self, path, segments, query, raw):
        matched = route(self.command, segments)
        if matched is None:
            self._send_error("UnknownOperationException", 404, f"No operation matches {self.command} {path}")
            return
        service, operation, handler, params = matched
        scope = SCOPE_RE.search(self.headers.get("Authorization", ""))
        access_key, region = scope.groups() if scope else (None, None)
        try:
            account = self.accounts.of(access_key)
        except Exception as exc:
            self._send_error("InternalFailure", 500, f"double could not resolve the caller's account: {exc!r}")
            return
        call = {"account": account, "region": region, "operation": operation, "target": params[0] if params else None,
                "access_key": access_key, "time": time.monotonic()}
        try:
            body = None
            if raw.strip():
                try:
                    body = json.loads(raw.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    raise ApiError("bad_request", f"{operation}: request body is not valid JSON") from None
            if operation == "ListAccountIntegrations" and isinstance(body, dict):
                call["target"] = body.get("Uri")
            result = handler(self.store.state_for(account, region), params, query, body)
        except ApiError as err:
            code, status = ERRORS[service][err.kind]
            self.store.record({**call, "status": status})
            self._send_error(code, status, err.message)
            return
        self.store.record({**call, "status": 200})
        self._send(200, result)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Client resets and the like: no traceback on stderr unless --verbose.
        if Handler.verbose:
            super().handle_error(request, client_address)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0 = pick a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--moto", help="moto server URL: callers' accounts are resolved through its STS")
    parser.add_argument("--account", help="the default account: callers moto does not place, and unscoped states")
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = parser.parse_args(argv)

    store = Store(args.account)
    Handler.store = store
    Handler.accounts = Accounts(args.moto, args.account)
    Handler.verbose = args.verbose
    server = Server((args.host, args.port), Handler)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    print(f"PORT={server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
