#!/usr/bin/env python3
"""Ollama API overhead: the same streamed chat sent straight to an engine's /v1/chat/completions and to modeld's
/api/chat (which converts the engine's SSE stream to NDJSON), in one run; the daemon's own /v1/chat/completions
(relayed as it is) beside them for comparison.

Usage: bench-ollama.py --daemon URL --direct URL --model NAME [--requests N]

N sequential streamed chats of one token on one kept-alive connection to each side, alternating so that drift on a
noisy machine hits both alike; each is timed from sending the request to the end of its stream (the engine's
`data: [DONE]`, the daemon's line with `"done": true`). Prints p50/p90/p99 of each, the latency each daemon route
adds per percentile, and the medians of the paired differences.
"""
import argparse, http.client, json, statistics, time, urllib.parse


def percentile(values, p):
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


class Client:
    def __init__(self, base):
        url = urllib.parse.urlsplit(base)
        self.connection = http.client.HTTPConnection(url.hostname, url.port)

    def stream(self, path, body, last):
        """Posts `body` and reads the streamed reply to its end; fails unless the last line contains `last`."""
        self.connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200 or last not in data.strip().splitlines()[-1]:
            raise SystemExit("HTTP %d on %s: %s" % (response.status, path, data[-300:]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--daemon", required=True)
    parser.add_argument("--direct", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    messages = [{"role": "user", "content": "Hello"}]
    openai = json.dumps({"model": args.model, "messages": messages, "max_tokens": 1, "temperature": 0, "stream": True}).encode()
    ollama = json.dumps({"model": args.model, "messages": messages, "options": {"num_predict": 1, "temperature": 0}}).encode()
    sides = [
        (Client(args.daemon), "/api/chat", ollama, b'"done":true', []),
        (Client(args.direct), "/v1/chat/completions", openai, b"[DONE]", []),
        (Client(args.daemon), "/v1/chat/completions", openai, b"[DONE]", []),
    ]
    for _ in range(100):
        for client, path, body, last, _ in sides:
            client.stream(path, body, last)
    for i in range(args.requests):
        for client, path, body, last, out in (sides if i % 2 == 0 else sides[::-1]):
            start = time.perf_counter()
            client.stream(path, body, last)
            out.append((time.perf_counter() - start) * 1000)
    through, straight, gateway = sides[0][4], sides[1][4], sides[2][4]
    print("latency of %d sequential streamed 1-token chats, ms:" % args.requests)
    print("  %-26s %8s %8s %8s" % ("", "p50", "p90", "p99"))
    for name, values in [("engine /v1 (direct)", straight), ("daemon /api/chat", through), ("daemon /v1 (for comparison)", gateway)]:
        print("  %-26s %8.3f %8.3f %8.3f" % (name, percentile(values, 50), percentile(values, 90), percentile(values, 99)))
    for name, values in [("added by /api/chat", through), ("added by /v1", gateway)]:
        print("  %-26s %8.3f %8.3f %8.3f" % (name, *(percentile(values, p) - percentile(straight, p) for p in (50, 90, 99))))
    print("  median of paired differences: /api/chat %.3f ms, /v1 %.3f ms" % (
        statistics.median(g - d for g, d in zip(through, straight)), statistics.median(g - d for g, d in zip(gateway, straight))))


main()
