"""The daemon's API fuzzed from its own `/openapi.json` with schemathesis: every operation, without and with an
API key, generated from the schemas (valid and invalid data), with three checks on every reply: no 5xx, a
status code the document lists for the operation, and a body that matches the documented schema. The daemon
runs in a throw-away data directory; its hub is NotFoundHub on loopback, its engines the fake engine, so that
the pulls and starts the fuzzer asks for end without leaving the machine."""

import json
import os
import subprocess
import sys

import pytest

from conftest import Daemon, assert_serving, call, hub_env, start_tiny_run

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
# Bounded: a few examples per operation, one worker, and a fixed seed so that a run is repeatable (FUZZ_SEED
# changes it; FUZZ_EXAMPLES the count).
EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "30")
SEED = os.environ.get("FUZZ_SEED", "1616")


@pytest.fixture(scope="module")
def fuzzed(workdir, hub):
    """A daemon of its own (the fuzzer removes and stops things), with a model and a ready run for it to find."""
    server = Daemon(workdir / "fuzzed", extra_env=hub_env(hub))
    try:
        start_tiny_run(server)
        yield server
    finally:
        server.stop()


def schemathesis(daemon, *extra):
    """Runs schemathesis against the daemon; its output, and a failure naming it unless every check passed."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"http://127.0.0.1:{daemon.port}/openapi.json",
        "--checks", CHECKS, "--max-examples", EXAMPLES, "--seed", SEED, "--workers", "1",
        "--phases", "examples,coverage,fuzzing", "--generation-database", "none", "--request-timeout", "30",
        "--no-color", "--suppress-health-check", "all",
        # The event stream stays open by design, so every case would wait out the request timeout; the Swift suite's
        # EventStreamTests cover it.
        "--exclude-name", "GET /api/v1/events", *extra,
    ]
    # In the daemon's throw-away directory: schemathesis leaves its state in the working directory.
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=daemon.root)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"schemathesis failed ({' '.join(command)}):\n{output[-20000:]}"
    # The summary (operations, phases, cases) in pytest's captured output, shown with -s or -rP.
    print(output[output.rfind("SUMMARY"):])
    return output


def test_fuzz_without_keys(fuzzed):
    """No key exists and none is sent: every operation but key creation, which would make the rest of the run a
    series of 401s (the next run covers it)."""
    schemathesis(fuzzed, "--exclude-name", "POST /api/v1/keys")
    assert_serving(fuzzed)


def test_fuzz_with_an_admin_key(fuzzed):
    """An admin key exists (created over the control socket) and is sent on every request. Every operation but
    revocation: schemathesis finds the key's id in `GET /api/v1/keys` and would revoke the key it sends (the run
    without keys covers revocation)."""
    status, _, body = call(fuzzed.control_socket, "POST", "/api/v1/keys", {"name": "fuzz-admin", "scope": "admin"})
    assert status == 200, body
    key = json.loads(body)["data"]["key"]
    schemathesis(fuzzed, "--header", f"Authorization: Bearer {key}", "--exclude-name", "POST /api/v1/keys/{id}/revoke")
    assert_serving(fuzzed)
