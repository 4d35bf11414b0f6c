#!/usr/bin/env python3
"""The event stream's cost: the same pull from a loopback fake hub with 0 and with CLIENTS clients reading
`GET /api/v1/events`, each round on a fresh daemon and data directory. Prints per row the pull's wall time, the
daemon's CPU time (user + system, from /proc) during the pull, its peak RSS (VmHWM), and the events each client
received (all must have seen the pull end).

  swift build -c release --product modeld --product modelctl
  scripts/bench-events.py                 # SIZE_MIB=1024 CLIENTS=100 ROUNDS=3 PORT=18951; BUILD=.build/release
"""
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", ".build/release"))
SIZE_MIB = int(os.environ.get("SIZE_MIB", "1024"))
CLIENTS = int(os.environ.get("CLIENTS", "100"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
PORT = int(os.environ.get("PORT", "18951"))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def in_flight(port):
    """The daemon's `modeld_http_requests_in_flight` (this request included)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("modeld_http_requests_in_flight "):
            return int(float(line.split()[1]))
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


async def reader(port, counts, index, done):
    """One client: reads the stream, counting events, until it has seen pull.done."""
    reader_, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    await writer.drain()
    buffer = b""
    while not done[index]:
        chunk = await reader_.read(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            if b"\nevent: " in b"\n" + block or block.startswith(b"event: "):
                counts[index] += 1
                if b"event: pull.done" in block:
                    done[index] = True
    writer.close()


def one_round(clients, round_index):
    data = tempfile.mkdtemp(prefix="modeld-bench-events.")
    port = free_port()
    env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{PORT}", MODELD_DATA_DIR=data, HOME=data,
               MODELD_LISTEN=f"127.0.0.1:{port}", MODELD_LOG_LEVEL="warning")
    daemon = subprocess.Popen([os.path.join(BUILD, "modeld")], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/health")
        wall, cpu, counts, done = asyncio.run(pull_while_reading(daemon, port, env, clients))
        events = f"{min(counts)}-{max(counts)}, all saw pull.done: {all(done)}" if clients else "-"
        print(f"round {round_index}  {clients:4d} clients  pull {wall:6.2f} s  daemon CPU {cpu:6.2f} s  "
              f"peak RSS {peak_rss_mib(daemon.pid):6.1f} MiB  events per client {events}", flush=True)
        return wall, cpu
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


async def pull_while_reading(daemon, port, env, clients):
    counts = [0] * clients
    done = [False] * clients
    tasks = [asyncio.create_task(reader(port, counts, i, done)) for i in range(clients)]
    # Every client is subscribed before the pull starts: their requests are in flight.
    while clients and in_flight(port) < clients + 1:
        await asyncio.sleep(0.05)
    started_cpu, started = cpu_seconds(daemon.pid), time.time()
    pull = await asyncio.create_subprocess_exec(
        os.path.join(BUILD, "modelctl"), "pull", "bench/big", "--url", f"http://127.0.0.1:{port}",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, stderr = await pull.communicate()
    wall, cpu = time.time() - started, cpu_seconds(daemon.pid) - started_cpu
    if pull.returncode != 0:
        raise SystemExit(f"pull failed: {stderr.decode()}")
    deadline = time.time() + 30
    while clients and not all(done) and time.time() < deadline:
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return wall, cpu, counts, done


def main():
    source = tempfile.mkdtemp(prefix="modeld-bench-events-src.")
    for i in range(1, 5):
        with open(os.path.join(source, f"model-0000{i}-of-00004.safetensors"), "wb") as f:
            f.write(os.urandom(SIZE_MIB * (1 << 20) // 4))
    with open(os.path.join(source, "config.json"), "w") as f:
        f.write('{"model_type": "llama"}')
    hub = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts/bench-fakehub.py"), source, str(PORT), "bench/big"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{PORT}/api/models/bench/big/revision/main")
        print(f"pull of {SIZE_MIB} MiB over loopback; CPU: {os.cpu_count()} x {cpu_model()}")
        rows = {0: [], CLIENTS: []}
        for round_index in range(1, ROUNDS + 1):
            order = [0, CLIENTS] if round_index % 2 else [CLIENTS, 0]
            for clients in order:
                rows[clients].append(one_round(clients, round_index))
        for clients, values in rows.items():
            walls = sorted(w for w, _ in values)
            cpus = sorted(c for _, c in values)
            print(f"median {clients:4d} clients: pull {walls[len(walls) // 2]:.2f} s, daemon CPU {cpus[len(cpus) // 2]:.2f} s")
    finally:
        hub.terminate()
        shutil.rmtree(source, ignore_errors=True)


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
