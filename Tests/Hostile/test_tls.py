"""HTTPS (docs/tls.md): a daemon serving a certificate made by scripts/make-cert.sh, reached with the clients people
use: curl with --cacert (HTTP/1.1, and HTTP/2 chosen by ALPN), the `openai` client (httpx verifying with the
certificate) and `modelctl --cacert`; chats streamed over both protocols, through the gateway's fast path on HTTP/1.1
and the router on HTTP/2; slowloris over HTTP/2 (an unfinished header block, a trickled body, an idle connection that
ignores GOAWAY) cut while the daemon serves on, with the `h2` package as the client; the certificate reloaded on SIGHUP; plain HTTP sent to the HTTPS port; certificate files
that do not load. Nothing here talks to anything but 127.0.0.1."""

import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import time

import h2.connection
import h2.events
import hpack
import httpx
import openai
import pytest

from conftest import MODELD, PATIENCE, PRODUCTS, ROOT, TIMEOUT, Daemon, call, hub_env, start_tiny_run

MAKE_CERT = ROOT / "scripts" / "make-cert.sh"
MODELCTL = PRODUCTS / "modelctl"
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8, "temperature": 0}


def make_cert(directory, *names):
    """Runs the script; returns the certificate's and the key's paths, as it printed them."""
    done = subprocess.run([str(MAKE_CERT), "--out", str(directory), *names], capture_output=True, text=True,
                          timeout=PATIENCE)
    assert done.returncode == 0, done.stderr
    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    return printed["certificate"], printed["key"]


def fingerprint(pem):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def served_fingerprint(port):
    """The SHA-256 of the certificate a new connection is served (not verified: only looked at)."""
    return fingerprint(ssl.get_server_certificate(("127.0.0.1", port), timeout=PATIENCE))


def wait_until(condition, what):
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", str(PATIENCE), *args], capture_output=True, text=True,
                          timeout=PATIENCE + 10)


def tls_daemon(root, cert, key, extra_args=(), extra_env=None):
    return Daemon(root, extra_args=["--tls-cert", cert, "--tls-key", key, *extra_args], extra_env=extra_env)


@pytest.fixture(scope="module")
def server(workdir, hub):
    """A daemon serving HTTPS with a certificate for 127.0.0.1 and localhost, with the tiny model's run `tiny`
    (started over the control socket, which stays plain HTTP); `ca` is the certificate clients trust."""
    root = workdir / "tls"
    cert, key = make_cert(root / "cert", "127.0.0.1", "localhost")
    daemon = tls_daemon(root, cert, key, extra_env=hub_env(hub))
    try:
        daemon.ca = cert
        daemon.url = f"https://127.0.0.1:{daemon.port}"
        start_tiny_run(daemon, via=daemon.control_socket)
        yield daemon
    finally:
        daemon.stop()


def log_line(server, request_id):
    """The daemon's log line of one request, once written."""
    lines = lambda: [line for line in server.log_lines if f"hb.request.id={request_id}" in line and "] request" in line]
    wait_until(lines, f"the log line of request {request_id}")
    return lines()[0]


# MARK: curl


def test_curl_verifies_the_certificate(server):
    for host in ("127.0.0.1", "localhost"):
        done = curl("--cacert", server.ca, "-w", "%{http_code}", "-o", "/dev/null", f"https://{host}:{server.port}/health")
        assert done.returncode == 0 and done.stdout == "200", done.stderr
    # Not trusted without it: the certificate is really checked.
    done = curl("-o", "/dev/null", f"{server.url}/health")
    assert done.returncode == 60, done.stderr


@pytest.mark.parametrize("flag, version", [("--http2", "2"), ("--http1.1", "1.1")])
def test_alpn_chooses_the_protocol(server, flag, version):
    done = curl("--cacert", server.ca, flag, "-w", "%{http_version} %{http_code}", "-o", "/dev/null",
                f"{server.url}/api/v1/models/running")
    assert done.returncode == 0 and done.stdout == f"{version} 200", done.stderr


def streamed(server, flag, path, body):
    """POSTs with curl and returns (HTTP version, headers, body lines) of the streamed reply."""
    done = curl("--cacert", server.ca, flag, "-N", "-D", "-", "-w", "\n%{http_version}", "-H",
                "Content-Type: application/json", "--data-binary", json.dumps(body), f"{server.url}{path}")
    assert done.returncode == 0, done.stderr
    head, _, rest = done.stdout.replace("\r\n", "\n").partition("\n\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in head.split("\n")[1:])}
    *lines, version = rest.split("\n")
    assert head.split(" ")[1] == "200", done.stdout
    return version, headers, [line for line in lines if line]


# HTTP/1.1 keeps the gateway's fast path below the router; HTTP/2 streams are the router's.
@pytest.mark.parametrize("flag, version, via", [("--http1.1", "1.1", "via=fast-path"), ("--http2", "2", None)])
def test_streamed_openai_chat(server, flag, version, via):
    negotiated, headers, lines = streamed(server, flag, "/v1/chat/completions", {**CHAT, "stream": True})
    assert negotiated == version
    assert headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert chunks and all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert any(choice.get("finish_reason") for chunk in chunks for choice in chunk["choices"])
    line = log_line(server, headers["x-request-id"])
    assert (via in line) if via else ("via=" not in line), line


@pytest.mark.parametrize("flag, version, via", [("--http1.1", "1.1", "via=fast-path"), ("--http2", "2", None)])
def test_streamed_ollama_chat(server, flag, version, via):
    body = {"model": "tiny", "messages": CHAT["messages"], "options": {"num_predict": 8, "temperature": 0}}
    negotiated, headers, lines = streamed(server, flag, "/api/chat", body)
    assert negotiated == version
    replies = [json.loads(line) for line in lines]
    assert replies[-1]["done"] is True and all(reply["model"] == "tiny" for reply in replies)
    line = log_line(server, headers["x-request-id"])
    assert (via in line) if via else ("via=" not in line), line


# MARK: The openai client


def test_openai_client_trusts_the_certificate(server):
    with httpx.Client(verify=ssl.create_default_context(cafile=server.ca), timeout=PATIENCE) as http:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", http_client=http, max_retries=0)
        assert "tiny" in [model.id for model in client.models.list()]
        reply = client.chat.completions.create(**CHAT)
        assert reply.choices[0].finish_reason in ("stop", "length")
        chunks = list(client.chat.completions.create(**CHAT, stream=True))
        assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == reply.choices[0].message.content
    # The system's CAs do not know the certificate.
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=PATIENCE)
    with pytest.raises(openai.APIConnectionError):
        client.models.list()


# MARK: modelctl


def modelctl(*args, env=None, input=""):
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", **(env or {})}
    return subprocess.run([str(MODELCTL), *args], capture_output=True, text=True, env=environment, input=input,
                          timeout=PATIENCE)


def test_modelctl_trusts_cacert(server):
    done = modelctl("ps", "--url", server.url, "--cacert", server.ca)
    assert done.returncode == 0 and "tiny" in done.stdout, done.stderr
    done = modelctl("ps", "--url", server.url, env={"MODELD_CACERT": server.ca})
    assert done.returncode == 0 and "tiny" in done.stdout, done.stderr
    # The run is looked up over HTTPS; the chat then goes to its engine on loopback.
    done = modelctl("chat", "tiny", "--json", "--max-tokens", "4", "--url", server.url, "--cacert", server.ca,
                    input="Hello\n")
    assert done.returncode == 0 and json.loads(done.stdout)["finish_reason"] in ("stop", "length"), done.stderr
    # Unreachable (3) without it, saying how to trust the certificate.
    done = modelctl("ps", "--url", server.url)
    assert done.returncode == 3 and "not trusted" in done.stderr and "--cacert" in done.stderr, done.stderr


# MARK: Plain HTTP and silence on the HTTPS port


@pytest.mark.parametrize("method, path, shape", [("GET", "/health", "envelope"), ("POST", "/v1/chat/completions", "openai")])
def test_plain_http_is_told_to_use_https(server, method, path, shape):
    status, headers, body = call(server.port, method, path, CHAT if method == "POST" else None)
    assert status == 400 and headers["Connection"] == "close"
    reply = json.loads(body)
    message = reply["error"]["message"] if shape == "openai" else reply["msg"]
    assert f"https://127.0.0.1:{server.port}{path}" in message


def test_plain_http_connection_is_closed_after_the_answer(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
        sock.sendall(b"GET /health?token=secret HTTP/1.1\r\nHost:  localhost:1\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    # The address quoted back is the Host and the path, without the query.
    assert received.startswith(b"HTTP/1.1 400 ") and b"https://localhost:1/health\"" in received, received
    assert b"secret" not in received


def test_a_connection_that_never_starts_tls_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        # The header timeout (TIMEOUT) bounds the handshake.
        assert time.monotonic() - started < TIMEOUT + 5


# MARK: HTTP/2 limits


@pytest.fixture(scope="module")
def h2_server(workdir):
    """A daemon serving HTTPS with header and body timeouts of TIMEOUT but an idle timeout of 30 s: what closes a
    connection within seconds here is the header or body timeout, not idleness."""
    root = workdir / "tls-h2"
    cert, key = make_cert(root / "cert", "127.0.0.1")
    daemon = tls_daemon(root, cert, key, extra_args=["--idle-timeout", "30s"])
    try:
        daemon.ca = cert
        yield daemon
    finally:
        daemon.stop()


class H2:
    """A real HTTP/2 client (the `h2` package) on a TLS connection that chose h2 by ALPN; it sends only what it is
    told to, when it is told to."""

    def __init__(self, server):
        self.server = server
        context = ssl.create_default_context(cafile=server.ca)
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection()
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        self.sock.sendall(self.conn.data_to_send())

    def headers(self, method, path, *extra):
        return [(":method", method), (":path", path), (":scheme", "https"),
                (":authority", f"127.0.0.1:{self.server.port}"), *extra]

    def until(self, predicate):
        """Reads until an event satisfies `predicate` and returns it; None when the server closes the connection."""
        while data := self.sock.recv(65536):
            events = self.conn.receive_data(data)
            self.flush()
            for event in events:
                if predicate(event):
                    return event
        return None

    def get(self, path):
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, self.headers("GET", path), end_stream=True)
        self.flush()
        response = self.until(lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream)
        return response and int(dict(response.headers)[b":status"])


def assert_serving_h2(server):
    done = curl("--cacert", server.ca, "--http2", "-w", "%{http_version} %{http_code}", "-o", "/dev/null",
                f"https://127.0.0.1:{server.port}/health")
    assert done.stdout == "2 200", done.stderr


def test_h2_a_late_body_resets_its_stream_and_the_connection_serves_on(h2_server):
    client = H2(h2_server)
    client.conn.send_headers(1, client.headers("POST", "/api/v1/sessions", ("content-type", "application/json"),
                                               ("content-length", "100")))
    client.conn.send_data(1, b'{"model": ')
    client.flush()
    started = time.monotonic()
    reset = client.until(lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == 1)
    elapsed = time.monotonic() - started
    assert reset is not None, "the connection closed instead of the stream"
    assert TIMEOUT - 0.5 <= elapsed < TIMEOUT + 10, elapsed
    # The connection, and the daemon, serve on.
    assert client.get("/health") == 200
    assert_serving_h2(h2_server)


def test_h2_an_unfinished_header_block_closes_the_connection(h2_server):
    client = H2(h2_server)
    # The server's settings acknowledged first: nothing but a CONTINUATION may follow the unfinished block.
    assert client.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
    # A HEADERS frame without END_HEADERS, and no CONTINUATION after it: the request's head never completes.
    block = hpack.Encoder().encode(client.headers("GET", "/health"))
    client.sock.sendall(struct.pack(">I", len(block))[1:] + bytes([0x1, 0x0]) + struct.pack(">I", 1) + block)
    started = time.monotonic()
    assert client.until(lambda e: False) is None
    elapsed = time.monotonic() - started
    # The header timeout, not the idle timeout (30 s), closed it.
    assert TIMEOUT - 0.5 <= elapsed < TIMEOUT + 10, elapsed
    assert_serving_h2(h2_server)


def test_h2_an_idle_connection_is_closed_even_when_the_client_ignores_goaway(server):
    client = H2(server)
    started = time.monotonic()
    # Read, never answer: the GOAWAY and its PING go unacknowledged, and the connection closes all the same.
    while client.sock.recv(65536):
        pass
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + 10, elapsed
    assert_serving_h2(server)


# MARK: Reload on SIGHUP


def test_sighup_reloads_the_certificate(workdir):
    root = workdir / "tls-reload"
    directory = root / "cert"
    cert, key = make_cert(directory, "127.0.0.1")
    first = fingerprint(open(cert).read())
    # A connection held open across the reload must outlive the suite's short idle timeout (the last flag wins).
    daemon = tls_daemon(root, cert, key, extra_args=["--idle-timeout", f"{PATIENCE}s"])
    try:
        assert served_fingerprint(daemon.port) == first
        # An open connection keeps the certificate it has; new ones get the new one.
        kept = ssl.create_default_context(cafile=cert).wrap_socket(
            socket.create_connection(("127.0.0.1", daemon.port), timeout=PATIENCE), server_hostname="127.0.0.1")
        make_cert(directory, "127.0.0.1", "localhost")
        second = fingerprint(open(cert).read())
        assert second != first
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "TLS certificate reloaded" in daemon.log, "the reload")
        assert served_fingerprint(daemon.port) == second
        done = curl("--cacert", cert, "-w", "%{http_code}", "-o", "/dev/null", f"https://localhost:{daemon.port}/health")
        assert done.stdout == "200", done.stderr
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200 ")
        kept.close()

        # A file that does not load: the daemon says so and serves the certificate it has.
        with open(cert, "w") as broken:
            broken.write("not a certificate\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "TLS certificate not reloaded" in daemon.log, "the failed reload")
        failure = next(line for line in daemon.log_lines if "TLS certificate not reloaded" in line)
        assert f"file {cert} holds no PEM certificate" in failure, failure
        assert daemon.alive() and served_fingerprint(daemon.port) == second
    finally:
        daemon.stop()


# MARK: Start-up


def start_up_failure(root, *args):
    """Runs modeld with `args` until it exits (it must, at once); returns its log."""
    root.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root)}
    done = subprocess.run([str(MODELD), "--data-dir", str(root / "data"), "--control-socket", str(root / "modeld.sock"),
                           *args], capture_output=True, text=True, env=env, timeout=PATIENCE)
    assert done.returncode != 0, done.stderr
    return done.stderr


def test_files_that_do_not_load_stop_start_up(workdir):
    root = workdir / "tls-bad"
    cert, key = make_cert(root / "one", "127.0.0.1")
    other_cert, other_key = make_cert(root / "two", "127.0.0.1")
    garbage = root / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    missing = str(root / "missing.pem")
    cases = [
        (garbage, key, f"tls_cert: file {garbage} holds no PEM certificate"),
        (cert, garbage, f"tls_key: file {garbage} holds no unencrypted PEM private key"),
        (cert, other_key, f"tls_key: file {other_key} is not the private key of the certificate in {cert}"),
        (missing, key, f"tls_cert: file {missing} does not exist or cannot be read"),
    ]
    for index, (certificate, private_key, message) in enumerate(cases):
        log = start_up_failure(root / f"run-{index}", "--listen", "127.0.0.1:0", "--tls-cert", str(certificate),
                               "--tls-key", str(private_key))
        assert message in log, log
    log = start_up_failure(root / "run-half", "--listen", "127.0.0.1:0", "--tls-cert", cert)
    assert "tls_key: is not set but tls_cert is" in log, log


def test_non_loopback_without_keys_is_refused_with_tls_too(workdir):
    root = workdir / "tls-exposed"
    cert, key = make_cert(root / "cert", "127.0.0.1")
    log = start_up_failure(root, "--listen", "0.0.0.0:0", "--tls-cert", cert, "--tls-key", key)
    assert "is reachable from other hosts and no API key exists" in log, log
