#!/usr/bin/env python3
"""Two gateways side by side: the added latency of each over its own engine, requests alternating, one run.

Usage: bench-gateway-ab.py NAME=GATEWAY_PORT:ENGINE_PORT NAME=GATEWAY_PORT:ENGINE_PORT [--requests N]
Prints, per side, the median and p90 of (gateway time - direct time) over N paired 1-token completions.
"""
import argparse, http.client, json, statistics, time

parser = argparse.ArgumentParser()
parser.add_argument("sides", nargs="+")
parser.add_argument("--requests", type=int, default=2000)
args = parser.parse_args()
sides = []
for side in args.sides:
    name, ports = side.split("=")
    gateway, engine = ports.split(":")
    sides.append((name, http.client.HTTPConnection("127.0.0.1", int(gateway)), http.client.HTTPConnection("127.0.0.1", int(engine))))
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
added = {name: [] for name, _, _ in sides}
for i in range(args.requests):
    for name, gateway, engine in sides if i % 2 == 0 else sides[::-1]:
        added[name].append(timed(gateway) - timed(engine))
for name, values in added.items():
    print("%-10s added: median %.3f ms, p90 %.3f ms" % (name, statistics.median(values), sorted(values)[int(len(values) * 0.9)]))
