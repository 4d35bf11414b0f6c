"""Upstreams behind the gateway (docs/gateway.md) with the real `openai` client as the peer: a stream passes through a
failover from dead and failing upstreams to a live `modeld engine`, and a stream cut after its first byte reaches
the client cut (no failover once a reply has begun)."""

import http.server
import json
import socket
import threading

import openai
import pytest

from conftest import Daemon, call

MESSAGES = [{"role": "user", "content": "Say something."}]


class FailingUpstream(http.server.ThreadingHTTPServer):
    """An OpenAI-compatible upstream on loopback that answers every chat with `status`, or (with `cut`) begins a
    stream and closes the connection after its first chunk. Requests are counted."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.server.requests += 1
            if self.server.cut:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = {"id": "cut", "object": "chat.completion.chunk", "created": 0, "model": "tiny",
                         "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}]}
                data = f"data: {json.dumps(chunk)}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            body = json.dumps({"error": {"message": "down on purpose", "type": "server_error"}}).encode()
            self.send_response(self.server.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    def __init__(self, status=503, cut=False):
        super().__init__(("127.0.0.1", 0), self.Handler)
        self.daemon_threads = True
        self.status, self.cut, self.requests = status, cut, 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


def closed_port():
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def add_upstream(server, name, url, priority):
    status, _, body = call(server.control_socket, "POST", "/api/v1/upstreams",
                           {"name": name, "url": url, "models": ["tiny"], "priority": priority, "timeout": 5})
    assert status == 200, body


@pytest.fixture
def gateway(workdir, engine):
    server = Daemon(workdir / "upstreams", extra_env={"MODELD_COOLDOWN_FAILURES": "100"})
    try:
        yield server
    finally:
        server.stop()


def stream_text(base_url):
    """The streamed reply's text, its finish reason, and the completion tokens of its usage."""
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    text, finish, tokens = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return text, finish, tokens


def test_a_stream_passes_through_a_failover_to_the_live_upstream(gateway, engine):
    failing = FailingUpstream(status=503)
    add_upstream(gateway, "dead", f"http://127.0.0.1:{closed_port()}/v1", 0)
    add_upstream(gateway, "failing", failing.url, 1)
    add_upstream(gateway, "live", f"http://127.0.0.1:{engine.port}/v1", 2)
    direct = stream_text(f"http://127.0.0.1:{engine.port}/v1")
    assert direct[1] is not None and direct[2] and direct[2] > 0, direct
    through = stream_text(f"http://127.0.0.1:{gateway.port}/v1")
    assert through == direct
    assert failing.requests == 1
    log = gateway.log
    assert "backend=upstream:dead" in log and "reason=connect" in log, log[-3000:]
    assert "backend=upstream:failing" in log and "reason=5xx" in log, log[-3000:]
    status, _, body = call(gateway.port, "GET", "/metrics")
    assert 'modeld_upstream_failovers_total{from="upstream:dead",reason="connect"} 1' in body.decode()


def test_a_stream_cut_after_its_first_byte_reaches_the_client_cut(gateway, engine):
    cutting = FailingUpstream(cut=True)
    add_upstream(gateway, "cutting", cutting.url, 0)
    add_upstream(gateway, "live", f"http://127.0.0.1:{engine.port}/v1", 1)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{gateway.port}/v1", api_key="unused", max_retries=0)
    received = []
    with pytest.raises((openai.APIError, Exception)) as raised:
        stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, stream=True)
        for chunk in stream:
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    assert received == ["partial"], (received, raised.value)
    assert cutting.requests == 1
    assert "backend=upstream:live" not in gateway.log
