"""Hostile requests against every route family of the daemon (management, keys, the LLM API, Ollama's API, the `/v1`
gateway both through the router and through the relay below it) and against `modeld engine`'s own server. Each must
get a 4xx or a closed connection, and afterwards the server must still be alive and answering.

HTTP-level attacks use raw sockets; the servers run with 2 s idle, header and body timeouts (conftest.TIMEOUT)."""

import json
import resource
import selectors
import socket
import time

import pytest

from conftest import PATIENCE, TIMEOUT, assert_serving, call

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

# (server fixture, path, a valid body's members, the member naming something): one route of each family. The
# gateway's body names the ready run `tiny`, so that the relay below the router takes it; `gateway-router` names
# no run, so the router does.
TARGETS = {
    "management": ("daemon", "/api/v1/models/pull", {"model": "acme/none"}, "model"),
    "keys": ("daemon", "/api/v1/keys", {"name": "k", "scope": "admin"}, "name"),
    "llm": ("daemon", "/api/v1/llm/chat", {"model": "tiny", **CHAT}, "model"),
    "gateway-relay": ("daemon", "/v1/chat/completions", {"model": "tiny", **CHAT}, "model"),
    "gateway-router": ("daemon", "/v1/chat/completions", {"model": "none", **CHAT}, "model"),
    "engine": ("engine", "/v1/chat/completions", {"model": "tiny", **CHAT}, "model"),
    "ollama": ("daemon", "/api/chat", {"model": "tiny", "messages": CHAT["messages"], "options": {"num_predict": 2}}, "model"),
}
# The routes that read sampling numbers.
SAMPLING = ["llm", "gateway-relay", "gateway-router", "engine"]


@pytest.fixture(params=list(TARGETS))
def target(request):
    fixture, path, body, name = TARGETS[request.param]
    server = request.getfixturevalue(fixture)
    yield server, path, body, name
    assert_serving(server)
    if fixture == "daemon":
        # A key a test managed to create would make every later request need one.
        server.revoke_keys()
        status, _, reply = request_run(server)
        assert status == 200 and json.loads(reply)["data"]["state"] == "ready", reply


def request_run(daemon):
    return call(daemon.port, "GET", "/api/v1/models/running/tiny")


# MARK: Raw-socket helpers


def connect(server):
    return socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)


def head(method, path, headers=(), length=None, chunked=False):
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send(sock, data):
    """Sends all of `data`; False when the server has closed the connection."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def outcome(sock, within):
    """What the server does next: the status of the response it sends, or None when it closes the connection
    without one. Fails when it does neither within `within` seconds."""
    data = b""
    deadline = time.monotonic() + within
    while b"\r\n\r\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the server neither answered nor closed the connection within {within} s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        data += chunk
    if not data:
        return None
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data[9:12])


def closed_within(sock, within):
    """The server closes the connection within `within` seconds (whatever it sends first is read and dropped):
    the elapsed time."""
    started = time.monotonic()
    deadline = started + within
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the connection was still open after {within} s")
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - started


def refused(status):
    """A 4xx, or a connection closed without a response (None)."""
    return status is None or 400 <= status < 500


def post_raw(server, path, body, within=PATIENCE):
    with connect(server) as sock:
        send(sock, head("POST", path, length=len(body)) + body)
        return outcome(sock, within)


# MARK: Bodies


DEPTH = 200_000


@pytest.mark.parametrize("shape", ["array", "in-object"])
def test_deeply_nested_json(target, shape):
    """A 400 KB body nesting arrays 200,000 deep, alone or as a member next to a valid `model`."""
    server, path, body, _ = target
    deep = b"[" * DEPTH + b"]" * DEPTH
    if shape == "in-object":
        deep = json.dumps(body)[:-1].encode() + b', "extra": ' + deep + b"}"
    assert refused(post_raw(server, path, deep))


def test_content_length_of_100_mb_is_refused_before_the_body(target):
    """A declared 100 MB body is answered 413 at once, with only its first megabyte sent."""
    server, path, _, _ = target
    with connect(server) as sock:
        send(sock, head("POST", path, length=100_000_000) + b" " * (1 << 20))
        started = time.monotonic()
        status = outcome(sock, 10)
        assert status == 413, status
        assert time.monotonic() - started < 5


def test_chunked_body_of_100_mb_is_cut_off(target):
    """A chunked body that keeps coming is cut off by the body limit (32 MiB), long before 100 MB."""
    server, path, _, _ = target
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
    with connect(server) as sock:
        send(sock, head("POST", path, chunked=True))
        sent = 0
        while sent < 100 and send(sock, chunk):
            sent += 1
        assert sent < 100, "the server read a 100 MB body"
        assert refused(outcome(sock, 10))


def test_content_length_larger_than_the_body(target):
    """A body shorter than its `Content-Length`: the server waits out the body timeout, then closes."""
    server, path, _, _ = target
    with connect(server) as sock:
        send(sock, head("POST", path, length=1000) + b'{"model": ')
        elapsed = closed_within(sock, 5 * TIMEOUT)
        assert elapsed >= TIMEOUT * 0.5


def test_chunked_body_that_never_ends(target):
    """A chunked body whose last chunk never comes: closed after the body timeout."""
    server, path, _, _ = target
    with connect(server) as sock:
        send(sock, head("POST", path, chunked=True) + b"a\r\n{\"model\": \r\n")
        closed_within(sock, 5 * TIMEOUT)


# MARK: Headers


def test_one_huge_header(target):
    server, path, _, _ = target
    with connect(server) as sock:
        send(sock, head("GET", path, headers=["X-Big: " + "a" * 200_000]))
        status = outcome(sock, 10)
        assert status in (None, 431), status


def test_header_flood(target):
    """10,000 small header fields, then 1 MB more, sent as fast as the server takes them."""
    server, path, _, _ = target
    lines = b"".join(b"X-Flood-%d: %s\r\n" % (index, b"v" * 90) for index in range(10_000))
    with connect(server) as sock:
        ok = send(sock, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines)
        if ok:
            send(sock, b"X-More: " + b"m" * 1_000_000 + b"\r\n\r\n")
        assert outcome(sock, 10) in (None, 400, 431)


# MARK: Slow clients


def trickle(sock, prefix, byte, interval, count):
    """Sends `prefix`, then `byte` every `interval` seconds, `count` times at most; False once the server has
    closed the connection (it may take one more send to notice)."""
    if not send(sock, prefix):
        return False
    for _ in range(count):
        sock.settimeout(interval)
        try:
            if not sock.recv(65536):
                return False
        except socket.timeout:
            pass
        except ConnectionResetError:
            return False
        if not send(sock, byte):
            return False
    return True


def test_slowloris_headers(target):
    """A header line trickled a byte a second (each pause under the timeouts): cut off by the header timeout."""
    server, path, _, _ = target
    with connect(server) as sock:
        started = time.monotonic()
        still_open = trickle(sock, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode(), b"a", 1, 6 * TIMEOUT)
        assert not still_open, "a trickled header was read for 12 s"
        assert time.monotonic() - started < 4 * TIMEOUT


def test_slowloris_body(target):
    """A body trickled a byte a second: cut off once it falls behind the minimum rate after the body timeout."""
    server, path, _, _ = target
    with connect(server) as sock:
        started = time.monotonic()
        still_open = trickle(sock, head("POST", path, length=10_000), b" ", 1, 6 * TIMEOUT)
        assert not still_open, "a trickled body was read for 12 s"
        assert time.monotonic() - started < 4 * TIMEOUT


def test_slow_pauses_in_the_body(target):
    """Pauses longer than the body timeout between pieces of a body end the connection at the first pause."""
    server, path, _, _ = target
    with connect(server) as sock:
        send(sock, head("POST", path, length=100) + b"{")
        elapsed = closed_within(sock, 5 * TIMEOUT)
        assert elapsed < 3 * TIMEOUT


def test_idle_connection_is_closed(target):
    server, _, _, _ = target
    with connect(server) as sock:
        elapsed = closed_within(sock, 5 * TIMEOUT)
        assert elapsed >= TIMEOUT * 0.5


def test_keep_alive_connection_is_closed_after_the_idle_timeout(target):
    """After a complete exchange, a kept-alive connection with nothing more is closed after the idle timeout."""
    server, _, _, _ = target
    with connect(server) as sock:
        send(sock, f"GET {server.health_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert outcome(sock, 30) == 200
        closed_within(sock, 5 * TIMEOUT)


def test_a_quiet_stream_outlives_the_idle_timeout(daemon):
    """A reply being streamed is never idle time: `logs?follow=true` sends nothing while the engine is quiet, and
    stays open for three idle timeouts (then the client ends it)."""
    with connect(daemon) as sock:
        send(sock, b"GET /api/v1/models/running/tiny/logs?follow=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert outcome(sock, 30) == 200
        deadline = time.monotonic() + 3 * TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            try:
                assert sock.recv(65536), "the server ended a following log stream"
            except socket.timeout:
                break
    assert_serving(daemon)


@pytest.mark.parametrize("fixture,count", [("daemon", 1000), ("engine", 300)])
def test_many_idle_connections(request, fixture, count):
    """`count` idle connections do not keep the server from answering another one at once, and all of them are
    closed after the idle timeout."""
    server = request.getfixturevalue(fixture)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))
    sockets = []
    try:
        for _ in range(count):
            sockets.append(connect(server))
        started = time.monotonic()
        status, _, _ = call(server.port, "GET", server.health_path, timeout=10)
        assert status == 200
        assert time.monotonic() - started < 5
        selector = selectors.DefaultSelector()
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        open_count = count
        deadline = time.monotonic() + 6 * TIMEOUT + 10
        while open_count and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                try:
                    data = key.fileobj.recv(4096)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                if not data:
                    selector.unregister(key.fileobj)
                    open_count -= 1
        assert open_count == 0, f"{open_count} of {count} idle connections still open"
    finally:
        for sock in sockets:
            sock.close()
    assert_serving(server)




# MARK: Text and numbers


INVALID_UTF8 = [
    b'{"model": "\xff\xfe\xfd", "messages": [{"role": "user", "content": "\xc3\x28"}]}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": "\xed\xa0\x80"}], "max_tokens": 2}',
    b'{"\xff": 1}',
]


@pytest.mark.parametrize("body", INVALID_UTF8, ids=["model", "content", "key"])
def test_invalid_utf8_body(target, body):
    server, path, _, _ = target
    status = post_raw(server, path, body)
    assert refused(status), status


@pytest.mark.parametrize("raw_path", [b"/api/v1/models/\xff\xfe", b"/v1/chat/completions\xc3\x28", b"/\x00", b"/api/v1/models/a\x00b"])
def test_invalid_bytes_in_the_path(target, raw_path):
    server, _, _, _ = target
    with connect(server) as sock:
        send(sock, b"GET " + raw_path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert refused(outcome(sock, 30))


@pytest.mark.parametrize(
    "path",
    ["/api/v1/models/a%00b", "/api/v1/models/a%00b/c", "/api/v1/models/running/a%00b", "/api/v1/models/running/%FF/logs",
     "/api/v1/keys/%00", "/v1/models%00"])
def test_nul_and_invalid_percent_escapes_in_paths(daemon, path):
    for method in ("GET", "POST", "DELETE"):
        status, _, body = call(daemon.port, method, path)
        assert 400 <= status < 500, (method, path, status, body)
    assert_serving(daemon)


@pytest.mark.parametrize("name", ["a\u0000b", "acme/qwen2-tiny\u0000", "\u0000", "acme/\u0000/x"])
def test_nul_in_names(target, name):
    server, path, body, field = target
    status, _, reply = call(server.port, "POST", path, {**body, field: name})
    assert 400 <= status < 500, (status, reply)


@pytest.mark.parametrize("name", ["a\u0000b", "acme/qwen2-tiny\u0000"])
@pytest.mark.parametrize("path", ["/api/v1/models/resolve", "/api/v1/models/start", "/api/v1/models/remove", "/api/v1/models/verify",
                                  "/api/v1/llm/count-tokens", "/api/v1/llm/generate"])
def test_nul_in_model_names_of_management_routes(daemon, path, name):
    status, _, reply = call(daemon.port, "POST", path, {"model": name, "prompt": "x", "text": "x"})
    assert 400 <= status < 500, (status, reply)
    assert_serving(daemon)


NUMBERS = ["1e999", "-1e999", "1e400", "-0", "-0.0", "NaN", "Infinity"]


@pytest.mark.parametrize(
    "field,number", [("max_tokens", number) for number in [*NUMBERS, "18446744073709551616"]]
    + [("temperature", number) for number in NUMBERS])
@pytest.mark.parametrize("target", SAMPLING, indirect=True)
def test_extreme_numbers(target, field, number):
    """Numbers no double or integer holds, NaN and negative zero. `-0` is zero: a temperature of zero is valid
    (greedy) and may be answered 200; every other case must be refused with a 4xx (a max_tokens of zero too)."""
    server, path, body, _ = target
    members = {**body, field: 0}
    text = json.dumps(members).replace(f'"{field}": 0', f'"{field}": {number}').encode()
    status = post_raw(server, path, text)
    if field == "temperature" and number in ("-0", "-0.0"):
        assert status == 200 or refused(status), status
    else:
        assert refused(status), status
