"""Tracing (docs/tracing.md): a daemon started with `--otlp-endpoint` sends its spans, OTLP over HTTP with protobuf
bodies, to a collector stand-in on loopback that decodes them with OpenTelemetry's own protobuf types
(`opentelemetry-proto`). The fake engine (as vLLM) writes down the `traceparent` each chat request brings it."""

import http.client
import http.server
import json
import os
import threading
import time

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from conftest import PATIENCE, TINY_MODEL, Daemon, RepoHub, call

REPO = "acme/qwen2-tiny"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT


class Collector(http.server.ThreadingHTTPServer):
    """An OpenTelemetry collector's OTLP/HTTP receiver: `POST /v1/traces` with an `ExportTraceServiceRequest`; every
    span it is sent is kept (as a dict) with its resource's attributes."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                self.server.refused.append((self.path, self.headers.get("Content-Type")))
                self._reply(404, b"")
                return
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.server.add(request)
            self._reply(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

        def _reply(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    def __init__(self):
        super().__init__(("127.0.0.1", 0), self.Handler)
        self.daemon_threads = True
        self.spans = []
        self.refused = []
        self.changed = threading.Condition()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, request):
        with self.changed:
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append({
                            "name": span.name, "kind": span.kind, "trace": span.trace_id.hex(), "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex() or None, "attributes": attributes(span.attributes),
                            "events": [event.name for event in span.events], "error": span.status.code == span.status.STATUS_CODE_ERROR,
                            "resource": resource,
                        })
            self.changed.notify_all()

    def wait_for(self, condition, what):
        """What `condition(spans)` returns once it is true, waiting for more spans meanwhile."""
        deadline = time.monotonic() + PATIENCE
        with self.changed:
            while not (found := condition(self.spans)):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"timed out waiting for {what}; spans: {json.dumps(self.spans, indent=1)}"
                self.changed.wait(remaining)
            return found


def attributes(pairs):
    values = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        values[pair.key] = getattr(pair.value, kind) if kind else None
    return values


def one(spans, **wanted):
    """The only span with these fields (and attributes, given as `attributes={...}`), or None while there is none."""
    want_attributes = wanted.pop("attributes", {})
    found = [span for span in spans
             if all(span[key] == value for key, value in wanted.items())
             and all(span["attributes"].get(key) == value for key, value in want_attributes.items())]
    assert len(found) <= 1, found
    return found[0] if found else None


@pytest.fixture(scope="module")
def collector():
    server = Collector()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def hub():
    server = RepoHub(REPO, TINY_MODEL, bytes_per_second=50_000_000)
    yield server
    server.shutdown()


def start_fake_run(daemon, name):
    """A run `name` of the pulled (or adopted) tiny model on the fake engine as vLLM; returns once it is ready."""
    status, _, body = call(daemon.port, "POST", "/api/v1/models/start", {"model": REPO, "engine": "vllm", "name": name})
    assert status == 200, body
    deadline = time.monotonic() + PATIENCE
    while True:
        status, _, body = call(daemon.port, "GET", f"/api/v1/models/running/{name}")
        state = json.loads(body)["data"]["state"] if status == 200 else None
        if state == "ready":
            return
        assert state in ("starting", None) and time.monotonic() < deadline, body
        time.sleep(0.1)


@pytest.fixture(scope="module")
def traced(workdir, collector, hub):
    """A daemon sending spans to the collector (its base URL: the daemon posts to `/v1/traces` under it), with the
    tiny model pulled from the hub (`pull_reply`) and a run `fake` of it on the fake engine."""
    trace_log = workdir / "traced-engine-traceparents.log"
    server = Daemon(workdir / "traced", extra_args=["--otlp-endpoint", collector.endpoint],
                    extra_env={"HF_ENDPOINT": hub.endpoint, "FAKE_ENGINE_TRACE_LOG": str(trace_log),
                               "OTEL_SERVICE_NAME": "modeld-under-test", "OTEL_BSP_SCHEDULE_DELAY": "50"})
    try:
        status, _, body = call(server.port, "POST", "/api/v1/models/pull?stream=false", {"model": REPO})
        assert status == 200, body
        server.pull_reply = json.loads(body)
        start_fake_run(server, "fake")
        server.trace_log = trace_log
        yield server
    finally:
        server.stop()


def engine_traceparents(log):
    return log.read_text().splitlines() if log.exists() else []


def chat(port, headers, stream=False):
    """A chat completion on a kept-alive HTTP/1.1 connection (the gateway's fast path takes it unless `headers`
    say `Connection: close`): (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    try:
        body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
        connection.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_pull_has_a_span_per_file_under_the_request(traced, collector):
    files = sorted(path.name for path in TINY_MODEL.iterdir())

    def pull_spans(spans):
        request = one(spans, kind=SERVER, attributes={"http.route": "/api/v1/models/pull"})
        pull = request and one(spans, name="pull", parent=request["id"])
        per_file = pull and [span for span in spans if span["name"] == "pull file" and span["parent"] == pull["id"]]
        return per_file and len(per_file) == len(files) and (request, pull, per_file)

    request, pull, per_file = collector.wait_for(pull_spans, "the pull's spans")
    assert request["parent"] is None and request["attributes"]["http.response.status_code"] == 200
    assert request["attributes"]["modeld.relay"] == "router"
    assert pull["trace"] == request["trace"]
    assert pull["attributes"]["modeld.pull.repo"] == REPO and pull["attributes"]["modeld.pull.state"] == "ready"
    assert sorted(span["attributes"]["modeld.pull.file"] for span in per_file) == files
    for span in per_file:
        assert span["trace"] == request["trace"] and not span["error"]
        assert span["attributes"]["modeld.pull.file.state"] == "verified"
        assert span["attributes"]["modeld.pull.file.size"] == (TINY_MODEL / span["attributes"]["modeld.pull.file"]).stat().st_size
    assert request["resource"]["service.name"] == "modeld-under-test"
    assert not collector.refused


def test_fast_path_joins_the_client_trace_and_passes_it_to_the_engine(traced, collector):
    client_span = "00f067aa0ba902b7"
    before = len(engine_traceparents(traced.trace_log))
    status, body = chat(traced.port, {"traceparent": f"00-{CLIENT_TRACE}-{client_span}-01"})
    assert status == 200, body

    def spans(found):
        request = one(found, kind=SERVER, trace=CLIENT_TRACE, attributes={"modeld.relay": "fast_path"})
        engine = request and one(found, kind=CLIENT, parent=request["id"])
        return engine and (request, engine)

    request, engine = collector.wait_for(spans, "the fast path's spans")
    # The request's span is the client's span's child; the engine call is the request's.
    assert request["parent"] == client_span
    assert request["name"] == "/v1/chat/completions"
    assert request["attributes"]["http.route"] == "/v1/chat/completions"
    assert request["attributes"]["http.response.status_code"] == 200
    assert request["attributes"]["modeld.run"] == "fake"
    assert engine["trace"] == CLIENT_TRACE
    assert engine["attributes"]["http.response.status_code"] == 200
    assert engine["attributes"]["url.path"] == "/v1/chat/completions"
    assert "first token" in engine["events"] and engine["attributes"]["modeld.time_to_first_token_ms"] > 0
    # The engine was sent a traceparent whose parent is the engine call's span.
    sent = engine_traceparents(traced.trace_log)[before:]
    assert sent == [f"00-{CLIENT_TRACE}-{engine['id']}-01"]


def test_router_relay_of_a_stream_is_traced_with_its_first_token(traced, collector):
    client_span = "b7ad6b7169203331"
    before = len(engine_traceparents(traced.trace_log))
    status, body = chat(traced.port, {"traceparent": f"00-{CLIENT_TRACE}-{client_span}-01", "Connection": "close"}, stream=True)
    assert status == 200 and body.endswith(b"data: [DONE]\n\n"), body

    def spans(found):
        request = one(found, kind=SERVER, parent=client_span)
        engine = request and one(found, kind=CLIENT, parent=request["id"])
        return engine and (request, engine)

    request, engine = collector.wait_for(spans, "the router's spans")
    assert request["attributes"]["modeld.relay"] == "router"
    assert request["attributes"]["http.route"] == "/v1/chat/completions"
    assert request["attributes"]["http.response.status_code"] == 200
    assert "first token" in engine["events"]
    assert engine["attributes"]["modeld.time_to_first_token_ms"] > 0
    sent = engine_traceparents(traced.trace_log)[before:]
    assert sent == [f"00-{CLIENT_TRACE}-{engine['id']}-01"]


def test_a_request_without_traceparent_starts_a_trace(traced, collector):
    before = len(engine_traceparents(traced.trace_log))
    status, body = chat(traced.port, {})
    assert status == 200, body
    sent = engine_traceparents(traced.trace_log)[before:]
    assert len(sent) == 1 and sent[0] != "-", sent
    _, trace, parent, flags = sent[0].split("-")
    engine = collector.wait_for(lambda spans: one(spans, kind=CLIENT, id=parent), "the engine call's span")
    request = one(collector.spans, id=engine["parent"])
    assert request["kind"] == SERVER and request["parent"] is None and request["trace"] == trace != CLIENT_TRACE
    assert flags == "01"


def test_an_engine_that_does_not_answer_marks_the_engine_call_failed(traced, collector):
    # A run whose engine is gone: the fast path's exchange fails (502), and both spans say so.
    status, _, body = call(traced.port, "GET", "/api/v1/models/running/fake")
    pid = json.loads(body)["data"]["pid"]
    client_span = "5fb397be34d26b51"
    os.kill(pid, 19)  # SIGSTOP: the engine takes the request and never answers...
    try:
        connection = http.client.HTTPConnection("127.0.0.1", traced.port, timeout=2)
        body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}]})
        connection.request("POST", "/v1/chat/completions", body=body,
                           headers={"Content-Type": "application/json", "traceparent": f"00-{CLIENT_TRACE}-{client_span}-01"})
        with pytest.raises(TimeoutError):
            connection.getresponse()
        connection.close()  # ...and the client goes away: 499, the engine's request cancelled.
        request = collector.wait_for(lambda spans: one(spans, kind=SERVER, parent=client_span), "the abandoned request's span")
        engine = collector.wait_for(lambda spans: one(spans, kind=CLIENT, parent=request["id"]), "its engine call")
    finally:
        os.kill(pid, 18)  # SIGCONT
    assert request["attributes"]["http.response.status_code"] == 499
    assert engine["error"] and "first token" not in engine["events"]


def test_tracing_is_off_by_default(workdir, hub):
    """Without a collector the engine is sent no traceparent, even when the client sent one."""
    trace_log = workdir / "untraced-engine-traceparents.log"
    server = Daemon(workdir / "untraced", extra_env={"HF_ENDPOINT": hub.endpoint, "FAKE_ENGINE_TRACE_LOG": str(trace_log)})
    try:
        assert "otlp_endpoint" not in server.log
        status, _, body = call(server.port, "POST", "/api/v1/models/adopt", {"path": str(TINY_MODEL), "kind": "dir", "name": REPO})
        assert status == 200, body
        start_fake_run(server, "fake")
        for headers in ({"traceparent": f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"},
                        {"traceparent": f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01", "Connection": "close"}):
            status, body = chat(server.port, headers)
            assert status == 200, body
        assert engine_traceparents(trace_log) == ["-", "-"]
    finally:
        server.stop()


def test_a_bad_endpoint_is_a_clear_error(workdir):
    with pytest.raises(RuntimeError, match=r"otlp_endpoint.*not an http or https URL"):
        Daemon(workdir / "bad-endpoint", extra_args=["--otlp-endpoint", "collector:4318"])
