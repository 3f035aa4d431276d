"""A minimal host for the AWS Lambda Runtime API, for tests and the demo.

It plays the part of the Lambda service for one function process: the real
`connect-slr-guard-lambda` binary polls `GET /2018-06-01/runtime/invocation/next`
and answers on `.../{request id}/response` or `.../{request id}/error`, exactly
as it does in AWS (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).
Test support code, not a Lambda emulator: one function, one invocation at a time.
"""

import json
import os
import queue
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:eu-west-2:111122223333:function:connect-slr-guard"


class Invocation:
    def __init__(self, payload, timeout_s):
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.deadline_ms = int((time.time() + timeout_s) * 1000)
        self.done = threading.Event()
        self.ok = None
        self.body = None


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A function process stopped mid-poll drops its connection: expected.
        pass


class RuntimeApiHost:
    """Serves the Runtime API on 127.0.0.1:<free port> in a thread."""

    def __init__(self):
        self.pending = queue.Queue()
        self.inflight = {}
        self.init_error = None
        self.first_poll = threading.Event()
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: with Nagle on, each reply on a
            # kept-alive connection waits ~40 ms for the client's delayed ACK.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != f"{API}/invocation/next":
                    return self._reply(404)
                host.first_poll.set()
                inv = host.pending.get()
                if inv is None:  # shutting down: drop the poller's connection
                    return
                host.inflight[inv.request_id] = inv
                self._reply(200, json.dumps(inv.payload).encode(), [
                    ("Content-Type", "application/json"),
                    ("Lambda-Runtime-Aws-Request-Id", inv.request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(inv.deadline_ms)),
                    ("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN),
                    ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0"),
                ])

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path[len(API):].strip("/").split("/")
                if parts == ["init", "error"]:
                    host.init_error = body.decode(errors="replace")
                    host.first_poll.set()
                    return self._reply(202)
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    inv = host.inflight.pop(parts[1], None)
                    if inv is None:
                        return self._reply(400)
                    inv.ok = parts[2] == "response"
                    inv.body = json.loads(body) if body else None
                    inv.done.set()
                    return self._reply(202)
                self._reply(404)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def invoke(self, payload, timeout_s=60.0):
        """Queues one event; returns (ok, body) once the function answers."""
        inv = Invocation(payload, timeout_s)
        self.pending.put(inv)
        if not inv.done.wait(timeout_s + 5):
            raise TimeoutError(f"function did not answer within {timeout_s}s")
        return inv.ok, inv.body

    def close(self):
        self.pending.put(None)
        self.server.shutdown()
        self.server.server_close()


class LambdaFunction:
    """The real Lambda binary as a process, attached to a RuntimeApiHost."""

    def __init__(self, binary, env, log_path=None, stdout_path=None):
        """`stdout_path`, if given, gets the process's stdout apart from its stderr (which goes to
        `log_path`): the JSON logs and the EMF metrics documents, as CloudWatch Logs would receive them."""
        self.host = RuntimeApiHost()
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_LAMBDA_RUNTIME_API": self.host.address,
            "AWS_LAMBDA_FUNCTION_NAME": "connect-slr-guard",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/connect-slr-guard",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            **env,
        }
        self.log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.stdout = open(stdout_path, "wb") if stdout_path else self.log
        self.started = time.monotonic()
        self.process = subprocess.Popen([binary], env=full_env, stdout=self.stdout, stderr=self.log)

    def wait_ready(self, timeout_s=30.0):
        """Seconds from process start to the first poll for an event (Init)."""
        if not self.host.first_poll.wait(timeout_s):
            raise TimeoutError("function never polled for an event")
        if self.host.init_error:
            raise RuntimeError(f"function init failed: {self.host.init_error}")
        return time.monotonic() - self.started

    def invoke(self, payload, timeout_s=60.0):
        if self.process.poll() is not None:
            raise RuntimeError(f"function exited with {self.process.returncode}")
        return self.host.invoke(payload, timeout_s)

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.host.close()
        for out in {self.log, self.stdout}:
            if out is not subprocess.DEVNULL:
                out.close()


class FifoEventSource:
    """Lambda's SQS event source for a FIFO queue, as template.yaml maps the work queue (BatchSize 1,
    ReportBatchItemFailures), played for tests and the benchmark: each function process gets a poller that
    receives one message, hands it over as Lambda does (a `Records` batch of one, with the message's attributes,
    MessageGroupId included), and deletes it once the function succeeded. SQS keeps a message group to one
    message in flight, so with several functions the groups run side by side and each group in order, as under
    Lambda's scaling. Test support code: any failure stops the drain."""

    def __init__(self, sqs, url, region):
        self.sqs = sqs
        self.url = url
        self.region = region
        self.arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def record(self, message):
        """One record as Lambda's SQS event source hands it over."""
        return {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
                "attributes": message.get("Attributes", {}), "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": self.arn,
                "awsRegion": self.region}

    def drain(self, functions, timeout_s=60.0, limit=1000):
        """Feeds `functions` (a LambdaFunction, or a list to run side by side) until the queue is empty and
        nothing is in flight; returns the deliveries, in the order they started: dicts of message_id, group,
        body (parsed), function (index), started and finished (time.monotonic())."""
        functions = functions if isinstance(functions, list) else [functions]
        lock = threading.Lock()
        state = {"in_flight": 0, "failure": None}
        deliveries = []

        def poll(index, fn):
            idle = 0.01
            while True:
                with lock:
                    if state["failure"] or len(deliveries) > limit:
                        return
                    state["in_flight"] += 1  # counted before the receive: an idle poller cannot miss a continuation
                try:
                    batch = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1, WaitTimeSeconds=0,
                                                     AttributeNames=["All"]).get("Messages", [])
                    for message in batch:
                        delivery = {"message_id": message["MessageId"],
                                    "group": message["Attributes"]["MessageGroupId"],
                                    "body": json.loads(message["Body"]), "function": index,
                                    "started": time.monotonic()}
                        with lock:
                            deliveries.append(delivery)
                        ok, body = fn.invoke({"Records": [self.record(message)]}, timeout_s=timeout_s)
                        delivery["finished"] = time.monotonic()
                        if not (ok and body == {"batchItemFailures": []}):
                            raise AssertionError(f"message {delivery} failed: {body}")
                        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
                except BaseException as exc:  # noqa: BLE001  (reported by drain)
                    with lock:
                        state["failure"] = state["failure"] or exc
                    return
                finally:
                    with lock:
                        state["in_flight"] -= 1
                if batch:
                    idle = 0.01
                    continue
                with lock:
                    if state["in_flight"] == 0 and self._empty():
                        return
                idle = min(idle * 2, 0.2)  # SQS long-polls; this backs off instead, sparing moto
                time.sleep(idle)

        threads = [threading.Thread(target=poll, args=(i, fn), daemon=True) for i, fn in enumerate(functions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if state["failure"]:
            raise state["failure"]
        if len(deliveries) > limit:
            raise AssertionError(f"more than {limit} messages: the queue does not drain")
        return sorted(deliveries, key=lambda d: d["started"])

    def _empty(self):
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        return all(int(v) == 0 for v in attributes["Attributes"].values())
