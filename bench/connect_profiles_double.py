#!/usr/bin/env python3
"""TEST DOUBLE for the few Amazon Connect and Customer Profiles read operations
that connect-slr-guard calls.

This is NOT an emulator of Amazon Connect or Customer Profiles. It serves only:

  Amazon Connect (restJson1, signing name "connect")
    ListInstances               GET  /instance?maxResults=&nextToken=
    DescribeInstance            GET  /instance/{InstanceId}
    ListInstanceStorageConfigs  GET  /instance/{InstanceId}/storage-configs?resourceType=&maxResults=&nextToken=
    ListBots                    GET  /instance/{InstanceId}/bots?lexVersion=&maxResults=&nextToken=
  Customer Profiles (restJson1, signing name "profile")
    ListAccountIntegrations     POST /integrations?max-results=&next-token=&include-hidden=   body {"Uri": "..."}
    GetDomain                   GET  /domains/{DomainName}
    ListDomains                 GET  /domains?max-results=&next-token=

following the real restJson1 wire format of the AWS API reference (and the
botocore / aws-sdk-rust models): JSON bodies with the model's member names,
timestamps as epoch seconds in JSON numbers, errors as HTTP status +
`X-Amzn-ErrorType: <Code>` header + JSON body {"message", "Message"}.
Requests are not authenticated; signatures are ignored. Both services are
served on one port (their paths do not overlap), so
AWS_ENDPOINT_URL_CONNECT and AWS_ENDPOINT_URL_CUSTOMER_PROFILES can both point
at it.

Page sizes: maxResults is capped at the model maximum (ListInstances and
ListInstanceStorageConfigs 10, ListBots 25, Profiles lists 100) and defaults
to that maximum. NextToken values are opaque strings bound to the operation.

State lives in memory and is replaced as a whole by `PUT /_double/state`:

  {"instances": [{"Id", "Arn", "IdentityManagementType", "InstanceAlias",
                  "CreatedTime" (epoch seconds), "ServiceRole", "InstanceStatus",
                  "InboundCallsEnabled", "OutboundCallsEnabled", ...}],
   "storage_configs": {"<instance id>": {"<RESOURCE_TYPE>": [{"AssociationId",
                  "StorageType", "S3Config"?, "KinesisVideoStreamConfig"?,
                  "KinesisStreamConfig"?, "KinesisFirehoseConfig"?}]}},
   "bots": {"<instance id>": [{"LexBot": {"Name", "LexRegion"}} | {"LexV2Bot": {"AliasArn"}}]},
   "domains": [{"DomainName", "DefaultExpirationDays", "DefaultEncryptionKey"?,
                "CreatedAt", "LastUpdatedAt", "Tags"}],
   "integrations": [{"DomainName", "Uri", "ObjectTypeName", "CreatedAt",
                     "LastUpdatedAt", "Hidden"? (double-only: shown only with include-hidden=true)}],
   "faults": {"deny_instances": ["<instance id>"],  # Connect calls naming it, and
                                                    # ListAccountIntegrations for its ARN -> 403
              "throttle_all": false,                # every call -> 429 ThrottlingException
              "error_5xx_all": false,               # every call -> 500 InternalService/ServerException
              "delay_ms": 0}}                       # sleep before every answer

Timestamps may be given as epoch seconds or ISO-8601 strings (converted to
epoch seconds). Missing CreatedAt/LastUpdatedAt default to 1700000000 (the
models mark them required).

Control endpoints (not AWS operations, never faulted or logged):
  GET /_double/state, PUT /_double/state, POST /_double/reset (empties state,
  faults and the call log), GET|PUT /_double/faults (just the faults object),
  GET /_double/calls (operations served so far), DELETE /_double/calls,
  GET /_double/health.

Usage: python bench/connect_profiles_double.py --port 0 [--state FILE] [--verbose]
Prints `PORT=<n>` on stdout once listening. Python stdlib only.
"""

import argparse
import base64
import copy
import datetime as _dt
import json
import signal
import sys
import threading
import time
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
        "denied": ("AccessDeniedException", 403),
        "not_found": ("ResourceNotFoundException", 404),
        "throttled": ("ThrottlingException", 429),
        "internal": ("InternalServiceException", 500),
        "bad_request": ("InvalidRequestException", 400),
    },
    "profiles": {
        "denied": ("AccessDeniedException", 403),
        "not_found": ("ResourceNotFoundException", 404),
        "throttled": ("ThrottlingException", 429),
        "internal": ("InternalServerException", 500),
        "bad_request": ("BadRequestException", 400),
    },
}

DEFAULT_TIMESTAMP = 1700000000
STATE_KEYS = ("instances", "storage_configs", "bots", "domains", "integrations", "faults")
FAULT_DEFAULTS = {"deny_instances": [], "throttle_all": False, "error_5xx_all": False, "delay_ms": 0}


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
    return {
        "instances": [],
        "storage_configs": {},
        "bots": {},
        "domains": [],
        "integrations": [],
        "faults": copy.deepcopy(FAULT_DEFAULTS),
    }


def _timestamp(value, where):
    if value is None:
        return DEFAULT_TIMESTAMP
    if isinstance(value, bool):
        raise StateError(f"{where}: timestamp must be a number or ISO-8601 string")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise StateError(f"{where}: cannot parse timestamp {value!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=_dt.timezone.utc)
        seconds = parsed.timestamp()
        return int(seconds) if seconds == int(seconds) else seconds
    raise StateError(f"{where}: timestamp must be a number or ISO-8601 string")


def _require(obj, keys, where):
    if not isinstance(obj, dict):
        raise StateError(f"{where}: expected an object")
    for key in keys:
        if key not in obj:
            raise StateError(f"{where}: missing required member {key!r}")


def normalize_faults(doc):
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise StateError("faults: expected an object")
    unknown = set(doc) - set(FAULT_DEFAULTS)
    if unknown:
        raise StateError(f"faults: unknown keys {sorted(unknown)}")
    faults = copy.deepcopy(FAULT_DEFAULTS)
    faults.update(doc)
    if not isinstance(faults["deny_instances"], list) or not all(
            isinstance(x, str) for x in faults["deny_instances"]):
        raise StateError("faults.deny_instances: expected a list of strings")
    for flag in ("throttle_all", "error_5xx_all"):
        if not isinstance(faults[flag], bool):
            raise StateError(f"faults.{flag}: expected true or false")
    delay = faults["delay_ms"]
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise StateError("faults.delay_ms: expected a non-negative number")
    return faults


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

    bots = doc.get("bots") or {}
    if not isinstance(bots, dict):
        raise StateError("bots: expected an object keyed by instance id")
    for inst_id, entries in bots.items():
        if not isinstance(entries, list):
            raise StateError(f"bots[{inst_id!r}]: expected a list")
        for j, entry in enumerate(entries):
            where = f"bots[{inst_id!r}][{j}]"
            if not isinstance(entry, dict) or not ({"LexBot", "LexV2Bot"} & set(entry)):
                raise StateError(f"{where}: expected {{'LexBot': {{Name, LexRegion}}}} or {{'LexV2Bot': {{AliasArn}}}}")
    state["bots"] = bots

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

    state["faults"] = normalize_faults(doc.get("faults"))
    return state


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.state = empty_state()
        self.calls = []

    def snapshot(self):
        with self.lock:
            return copy.deepcopy(self.state)


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


def is_denied(state, ident, inst):
    denied = set(state["faults"]["deny_instances"])
    if ident in denied:
        return True
    return inst is not None and (inst.get("Id") in denied or inst.get("Arn") in denied)


# --------------------------------------------------------------------------
# Operations: each takes (state, match_groups, query, body) and returns a dict
# --------------------------------------------------------------------------

def _connect_instance(state, ident, operation):
    inst = find_instance(state, ident)
    if is_denied(state, ident, inst):
        raise ApiError("denied", f"User is not authorized to perform {operation} on instance {ident}")
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
    inst = _connect_instance(state, parts[0], "DescribeInstance")
    return {"Instance": pick(inst, INSTANCE_MEMBERS)}


def op_list_instance_storage_configs(state, parts, query, body):
    rtype = (query.get("resourceType") or [None])[0]
    if not rtype:
        raise ApiError("bad_request", "ListInstanceStorageConfigs: resourceType is required")
    if rtype not in STORAGE_RESOURCE_TYPES:
        raise ApiError("bad_request", f"ListInstanceStorageConfigs: invalid resourceType {rtype!r}")
    inst = _connect_instance(state, parts[0], "ListInstanceStorageConfigs")
    by_type = state["storage_configs"].get(inst["Id"]) or state["storage_configs"].get(inst["Arn"]) or {}
    items = [pick(c, STORAGE_CONFIG_MEMBERS) for c in by_type.get(rtype, [])]
    page, nxt = paginate(items, query, "ListInstanceStorageConfigs", "maxResults", "nextToken", 10)
    out = {"StorageConfigs": page}
    if nxt:
        out["NextToken"] = nxt
    return out


def op_list_bots(state, parts, query, body):
    version = (query.get("lexVersion") or [None])[0]
    if version not in ("V1", "V2"):
        raise ApiError("bad_request", f"ListBots: lexVersion must be V1 or V2, got {version!r}")
    inst = _connect_instance(state, parts[0], "ListBots")
    entries = state["bots"].get(inst["Id"]) or state["bots"].get(inst["Arn"]) or []
    key = "LexBot" if version == "V1" else "LexV2Bot"
    items = [{key: e[key]} for e in entries if key in e]
    page, nxt = paginate(items, query, "ListBots", "maxResults", "nextToken", 25)
    out = {"LexBots": page}
    if nxt:
        out["NextToken"] = nxt
    return out


def op_list_account_integrations(state, parts, query, body):
    if body is None or not isinstance(body, dict):
        raise ApiError("bad_request", "ListAccountIntegrations: request body must be a JSON object")
    uri = body.get("Uri")
    if not isinstance(uri, str) or not uri:
        raise ApiError("bad_request", "ListAccountIntegrations: Uri is required")
    denied = set(state["faults"]["deny_instances"])
    for inst in state["instances"]:
        if inst.get("Arn") == uri and (inst.get("Id") in denied or inst.get("Arn") in denied):
            raise ApiError("denied", f"User is not authorized to list integrations for {uri}")
    include_hidden = (query.get("include-hidden") or ["false"])[0].lower() == "true"
    items = [
        pick(i, INTEGRATION_ITEM_MEMBERS)
        for i in state["integrations"]
        if i.get("Uri") == uri and (include_hidden or not i.get("Hidden"))
    ]
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
        if n == 3 and segments[2] == "bots":
            return "connect", "ListBots", op_list_bots, [segments[1]]
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
    server_version = "connect-profiles-double/1"
    store = None  # set in main()
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
        if path == "/_double/state" and method == "GET":
            self._send(200, store.snapshot())
        elif path == "/_double/state" and method == "PUT":
            try:
                doc = json.loads(raw.decode("utf-8") or "null")
                new_state = normalize_state(doc)
            except (ValueError, UnicodeDecodeError) as exc:
                self._send_error("BadRequestException", 400, f"invalid state document: {exc}")
                return
            with store.lock:
                store.state = new_state
            self._send(200, new_state)
        elif path == "/_double/faults" and method == "GET":
            self._send(200, store.snapshot()["faults"])
        elif path == "/_double/faults" and method == "PUT":
            try:
                faults = normalize_faults(json.loads(raw.decode("utf-8") or "null"))
            except (ValueError, UnicodeDecodeError) as exc:
                self._send_error("BadRequestException", 400, f"invalid faults document: {exc}")
                return
            with store.lock:
                store.state["faults"] = faults
            self._send(200, faults)
        elif path == "/_double/reset" and method == "POST":
            with store.lock:
                store.state = empty_state()
                store.calls = []
            self._send(200, {"reset": True})
        elif path == "/_double/calls" and method == "GET":
            with store.lock:
                calls = copy.deepcopy(store.calls)
            self._send(200, calls)
        elif path == "/_double/calls" and method == "DELETE":
            with store.lock:
                store.calls = []
            self._send(200, {"cleared": True})
        elif path == "/_double/health" and method == "GET":
            self._send(200, {"ok": True})
        else:
            self._send_error("UnknownOperationException", 404,
                             f"unknown double control request {method} {path}")

    def _operation(self, path, segments, query, raw):
        store = self.store
        state = store.snapshot()
        faults = state["faults"]
        matched = route(self.command, segments)
        if faults["delay_ms"]:
            time.sleep(faults["delay_ms"] / 1000.0)

        if matched is None:
            status, code = 404, "UnknownOperationException"
            self._log_call("unknown", None, path, query, status, code)
            self._send_error(code, status, f"No operation matches {self.command} {path}")
            return

        service, operation, handler, params = matched
        errs = ERRORS[service]
        try:
            if faults["error_5xx_all"]:
                raise ApiError("internal", "Injected internal error (faults.error_5xx_all)")
            if faults["throttle_all"]:
                raise ApiError("throttled", "Rate exceeded (faults.throttle_all)")
            body = None
            if raw.strip():
                try:
                    body = json.loads(raw.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    raise ApiError("bad_request", f"{operation}: request body is not valid JSON") from None
            result = handler(state, params, query, body)
        except ApiError as err:
            code, status = errs[err.kind]
            self._log_call(service, operation, path, query, status, code)
            self._send_error(code, status, err.message)
            return
        self._log_call(service, operation, path, query, 200, None)
        self._send(200, result)

    def _log_call(self, service, operation, path, query, status, error_code):
        entry = {
            "service": service,
            "operation": operation,
            "method": self.command,
            "path": path,
            "query": {k: v[0] if len(v) == 1 else v for k, v in query.items()},
            "status": status,
        }
        if error_code:
            entry["error"] = error_code
        with self.store.lock:
            self.store.calls.append(entry)


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
    parser.add_argument("--state", help="JSON file with the initial state document")
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = parser.parse_args(argv)

    store = Store()
    if args.state:
        try:
            with open(args.state, encoding="utf-8") as fh:
                store.state = normalize_state(json.load(fh))
        except (OSError, ValueError) as exc:
            print(f"connect_profiles_double: cannot load --state {args.state}: {exc}", file=sys.stderr)
            return 2

    Handler.store = store
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
