"""Fixtures of the hostile-input and fuzzing suites: the real `modeld` daemon and `modeld engine` built by
`swift build`, each in a throw-away data directory on a loopback port, with timeouts short enough (2 s) that
slow clients are cut off within a test. Nothing here talks to anything but 127.0.0.1."""

import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = Path(os.environ.get("MODELD_PRODUCTS", ROOT / ".build" / "debug"))
MODELD = PRODUCTS / "modeld"
FAKE_ENGINE = PRODUCTS / "fake-engine"
TINY_MODEL = ROOT / "Tests" / "BuiltinEngineTests" / "Fixtures" / "models" / "qwen2-tiny"
# The timeouts every server under test runs with (seconds): slow clients must be gone well within a test.
TIMEOUT = 2
# How long any wait of these tests lasts at most: a server that never answers fails the test, not the run.
PATIENCE = 60


class Process:
    """A server process whose stderr is collected; `port` comes from its "listening" log line."""

    health_path = "/health"

    def __init__(self, argv, env, port_pattern, cwd=None):
        self.argv = argv
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.log_lines = []
        self.listening = threading.Event()
        self.port = None
        self._pattern = re.compile(port_pattern)
        threading.Thread(target=self._read, daemon=True).start()
        if not self.listening.wait(PATIENCE) or self.port is None:
            self.stop()
            raise RuntimeError(f"{argv[0]} did not start listening; its log:\n{self.log}")

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.log_lines.append(line)
            match = self._pattern.search(line)
            if match and self.port is None:
                self.port = int(match.group(1))
                self.listening.set()
        self.listening.set()

    @property
    def log(self):
        return "".join(self.log_lines)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the daemon's control socket (trusted for administration, no key needed)."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def call(port, method, path, body=None, headers=None, timeout=PATIENCE):
    """One request on a fresh connection: (status, headers, body bytes). `port` may be a control socket's path."""
    if isinstance(port, (str, Path)):
        connection = UnixHTTPConnection(str(port), timeout)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def assert_serving(server):
    """The process is alive and answers `/health` with 200."""
    assert server.alive(), f"the process ended (status {server.proc.returncode}); its log:\n{server.log[-4000:]}"
    status, _, body = call(server.port, "GET", server.health_path, timeout=30)
    assert status == 200, body


class Daemon(Process):
    def __init__(self, root, extra_args=(), extra_env=None):
        self.root = Path(root)
        self.data = self.root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "MODELD_LOG_LEVEL": "info",
            # Engine ports of its own, away from the Swift tests' blocks (12000-17999, 20000-31999).
            "MODELD_ENGINE_PORTS": f"{40000 + (os.getpid() % 50) * 40}-{40000 + (os.getpid() % 50) * 40 + 39}",
        }
        for kind in ("VLLM", "SGLANG", "OLLAMA"):
            env[f"MODELD_{kind}_COMMAND"] = str(FAKE_ENGINE)
        env.update(extra_env or {})
        self.control_socket = self.root / "modeld.sock"
        argv = [str(MODELD), "--listen", "127.0.0.1:0", "--data-dir", str(self.data),
                "--control-socket", str(self.control_socket),
                "--idle-timeout", f"{TIMEOUT}s", "--header-timeout", f"{TIMEOUT}s", "--body-timeout", f"{TIMEOUT}s",
                *extra_args]
        super().__init__(argv, env, r"socket=127\.0\.0\.1:(\d+)[^\n]* listening")


    def revoke_keys(self):
        """Revokes every API key (over the control socket), so that the next test needs none."""
        status, _, body = call(self.control_socket, "GET", "/api/v1/keys")
        assert status == 200, body
        for key in json.loads(body)["data"]:
            if not key["revoked"]:
                call(self.control_socket, "POST", f"/api/v1/keys/{key['id']}/revoke")


class Engine(Process):
    def __init__(self, model_dir, served_name="tiny"):
        argv = [str(MODELD), "engine", "--model", str(model_dir), "--host", "127.0.0.1", "--port", "0",
                "--served-model-name", served_name,
                "--idle-timeout", f"{TIMEOUT}s", "--header-timeout", f"{TIMEOUT}s", "--body-timeout", f"{TIMEOUT}s"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MODELD_ENGINE_THREADS": "1"}
        super().__init__(argv, env, r"started and listening on 127\.0\.0\.1:(\d+)")


class NotFoundHub(http.server.ThreadingHTTPServer):
    """A hub on loopback that has no repositories: every request is Hugging Face's 404 for an unknown repository
    (`X-Error-Code: RepoNotFound`), so that pulls the fuzzer starts end at once without leaving the machine."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _not_found(self):
            body = b'{"error":"Repository not found"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = _not_found

        def log_message(self, *args):
            pass

    def __init__(self):
        super().__init__(("127.0.0.1", 0), self.Handler)
        self.daemon_threads = True
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class RepoHub(http.server.ThreadingHTTPServer):
    """A Hugging Face hub on loopback (docs/design/hubs.md, Hugging Face) serving one repository, `repo`, at one commit from
    the files of a directory, all as regular (git) files, their etag the git blob sha1. Bodies go out at
    `bytes_per_second` in all, like a slow link, so that a pull's progress can be watched; anything else is the hub's
    404 for an unknown repository."""

    COMMIT = "c" * 40
    CHUNK = 16 * 1024

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status, headers, body=b""):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.server.pace(self.wfile, body)

        def _route(self):
            hub, path = self.server, self.path.split("?")[0]
            if path.startswith(f"/api/models/{hub.repo}/revision/"):
                reply = {"id": hub.repo, "sha": hub.COMMIT, "siblings": [{"rfilename": name} for name in hub.files]}
                return self._send(200, [("Content-Type", "application/json")], json.dumps(reply).encode())
            if path == f"/api/models/{hub.repo}/tree/{hub.COMMIT}":
                tree = [{"type": "file", "oid": etag, "size": len(body), "path": name}
                        for name, (body, etag) in hub.files.items()]
                return self._send(200, [("Content-Type", "application/json")], json.dumps(tree).encode())
            prefix = f"/{hub.repo}/resolve/{hub.COMMIT}/"
            if path.startswith(prefix) and path[len(prefix):] in hub.files:
                body, etag = hub.files[path[len(prefix):]]
                return self._send(200, [("ETag", f'"{etag}"'), ("X-Repo-Commit", hub.COMMIT)], body)
            self._send(404, [("Content-Type", "application/json"), ("X-Error-Code", "RepoNotFound")],
                       b'{"error":"Repository not found"}')

        do_GET = do_HEAD = _route

        def log_message(self, *args):
            pass

    def __init__(self, repo, directory, bytes_per_second):
        super().__init__(("127.0.0.1", 0), self.Handler)
        self.daemon_threads = True
        self.repo = repo
        self.files = {}
        for path in sorted(Path(directory).iterdir()):
            body = path.read_bytes()
            self.files[path.name] = (body, hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest())
        self.bytes_per_second = bytes_per_second
        self._clock = threading.Lock()
        self._next_send = time.monotonic()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def pace(self, out, body):
        """Writes `body` in chunks, each one when the hub's shared budget of bytes per second allows it."""
        for start in range(0, len(body), self.CHUNK):
            chunk = body[start:start + self.CHUNK]
            with self._clock:
                at = max(self._next_send, time.monotonic())
                self._next_send = at + len(chunk) / self.bytes_per_second
            time.sleep(max(0.0, at - time.monotonic()))
            out.write(chunk)
            out.flush()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="session")
def hub():
    server = NotFoundHub()
    yield server
    server.shutdown()


def hub_env(hub):
    return {"HF_ENDPOINT": hub.endpoint, "MODELSCOPE_ENDPOINT": hub.endpoint}


@pytest.fixture(scope="session")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="modeld-hostile-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_tiny_run(server, model_dir=TINY_MODEL, repo="acme/qwen2-tiny", name="tiny", via=None):
    """Adopts the tiny model fixture (or a model directory like it) into the daemon and starts a run `tiny` (or
    `name`) of it on the built-in engine; returns once the run is ready. `via` is where to send the requests
    (`call`'s `port`) when not the daemon's plain-HTTP port."""
    port = via or server.port
    status, _, body = call(port, "POST", "/api/v1/models/adopt", {"path": str(model_dir), "kind": "dir", "name": repo})
    assert status == 200, body
    status, _, body = call(port, "POST", "/api/v1/models/start", {"model": repo, "engine": "builtin", "name": name})
    assert status == 200, body
    deadline = time.monotonic() + PATIENCE
    while True:
        status, _, body = call(port, "GET", f"/api/v1/models/running/{name}")
        state = json.loads(body)["data"]["state"] if status == 200 else None
        if state == "ready":
            return
        assert state in ("starting", None) and time.monotonic() < deadline, body
        time.sleep(0.1)


class Restarting:
    """One server for the whole session, started again (in a new directory) when a test has ended it: the test
    that ended it fails, the tests after it still test something."""

    def __init__(self, make):
        self.make = make
        self.server = None
        self.starts = 0

    def get(self):
        if self.server is None or not self.server.alive():
            self.starts += 1
            self.server = self.make(self.starts)
        return self.server

    def stop(self):
        if self.server is not None:
            self.server.stop()


@pytest.fixture(scope="session")
def daemons(workdir, hub):
    def make(start):
        server = Daemon(workdir / f"daemon-{start}", extra_env=hub_env(hub))
        try:
            start_tiny_run(server)
        except BaseException:
            server.stop()
            raise
        return server

    servers = Restarting(make)
    yield servers
    servers.stop()


@pytest.fixture
def daemon(daemons):
    """A daemon with no API keys, the tiny model adopted and a ready run `tiny` of the built-in engine on it."""
    return daemons.get()


@pytest.fixture(scope="session")
def engines():
    servers = Restarting(lambda _: Engine(TINY_MODEL))
    yield servers
    servers.stop()


@pytest.fixture
def engine(engines):
    """`modeld engine` on the tiny model, served as `tiny`."""
    return engines.get()
