#!/usr/bin/env python3
"""Two gateways side by side: the added latency of each over its own engine, requests alternating, one run.

Usage: bench-gateway-ab.py NAME=GATEWAY_PORT:ENGINE_PORT[:DAEMON_PID] ... [--requests N]
Prints, per side, the median and p90 of (gateway time - direct time) over N paired 1-token completions, and with
a daemon pid the CPU time that daemon spent per gateway request (from /proc).
"""
import argparse, http.client, json, os, statistics, time

parser = argparse.ArgumentParser()
parser.add_argument("sides", nargs="+")
parser.add_argument("--requests", type=int, default=2000)
args = parser.parse_args()
sides = []
pids = {}
for side in args.sides:
    name, ports = side.split("=")
    gateway, engine, *pid = ports.split(":")
    sides.append((name, http.client.HTTPConnection("127.0.0.1", int(gateway)), http.client.HTTPConnection("127.0.0.1", int(engine))))
    if pid:
        pids[name] = int(pid[0])
body = json.dumps({"model": "tiny", "prompt": "Hello", "max_tokens": 1, "temperature": 0}).encode()


def timed(connection):
    start = time.perf_counter()
    connection.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit("HTTP %d" % response.status)
    return (time.perf_counter() - start) * 1000


for _ in range(200):
    for _, gateway, engine in sides:
        timed(gateway), timed(engine)


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


added = {name: [] for name, _, _ in sides}
cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
for i in range(args.requests):
    for name, gateway, engine in sides if i % 2 == 0 else sides[::-1]:
        added[name].append(timed(gateway) - timed(engine))
cpu = {name: (cpu_seconds(pids[name]) - start) / args.requests * 1e6 for name, start in cpu.items()}
for name, values in added.items():
    line = "%-10s added: median %.3f ms, p90 %.3f ms" % (name, statistics.median(values), sorted(values)[int(len(values) * 0.9)])
    print(line + (", daemon CPU %.0f us/request" % cpu[name] if name in cpu else ""))
