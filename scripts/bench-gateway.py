#!/usr/bin/env python3
"""Gateway overhead: the same requests sent straight to an engine and through modeld's gateway, in one run.

Usage: bench-gateway.py --gateway URL --direct URL --model NAME [--requests N] [--streams N]

1. Latency: N sequential /v1/completions requests (1 token) on one kept-alive connection to each side,
   alternating gateway and direct so that drift on a noisy machine hits both alike. Prints p50/p90/p99 of
   each, and the added latency (gateway minus direct, per percentile and as the median of paired differences);
   with --daemon-pid and --engine-pid, the CPU time each process spent per request (from /proc).
2. Concurrency: --streams streamed chat completions at once through the gateway (and then direct), each read
   to `data: [DONE]`; prints errors, chunks and wall time.
"""
import argparse, asyncio, http.client, json, os, statistics, time, urllib.parse


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

    def post(self, path, body):
        try:
            self.connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = self.connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the kept-alive connection while it was idle (vLLM's uvicorn does after 5 s): again,
            # on a new one.
            self.connection.close()
            self.connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit("HTTP %d: %s" % (response.status, data[:300]))
        return data


def cpu_seconds(pid):
    """User + system CPU time of a process so far (from /proc), or None without a pid."""
    if not pid:
        return None
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alternate(gateway, direct, body, requests):
    """POSTs `body` to /v1/completions `requests` times through each Client, alternating which side goes first so
    that drift hits both alike. Returns each side's times in ms (gateway, direct) and its replies, parsed."""
    through, straight, replies = [], [], {id(gateway): [], id(direct): []}
    for i in range(requests):
        order = [(gateway, through), (direct, straight)] if i % 2 == 0 else [(direct, straight), (gateway, through)]
        for client, out in order:
            start = time.perf_counter()
            reply = client.post("/v1/completions", body)
            out.append((time.perf_counter() - start) * 1000)
            replies[id(client)].append(reply)
    return through, straight, [json.loads(r) for r in replies[id(gateway)]], [json.loads(r) for r in replies[id(direct)]]


def latency(args):
    body = json.dumps({"model": args.model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}).encode()
    gateway, direct = Client(args.gateway), Client(args.direct)
    alternate(gateway, direct, body, 100)
    daemon_cpu, engine_cpu = cpu_seconds(args.daemon_pid), cpu_seconds(args.engine_pid)
    through, straight, _, _ = alternate(gateway, direct, body, args.requests)
    paired = [g - d for g, d in zip(through, straight)]
    print("latency of %d sequential 1-token completions, ms:" % args.requests)
    print("  %-10s %8s %8s %8s" % ("", "p50", "p90", "p99"))
    for name, values in [("direct", straight), ("gateway", through)]:
        print("  %-10s %8.3f %8.3f %8.3f" % (name, percentile(values, 50), percentile(values, 90), percentile(values, 99)))
    print("  %-10s %8.3f %8.3f %8.3f" % ("added", *(percentile(through, p) - percentile(straight, p) for p in (50, 90, 99))))
    print("  median of paired differences: %.3f ms" % statistics.median(paired))
    if daemon_cpu is not None and engine_cpu is not None:
        # The daemon serves only the gateway half of the requests; the engine serves both halves.
        print("  CPU per request: daemon %.0f us (gateway requests), engine %.0f us (both sides)" % (
            (cpu_seconds(args.daemon_pid) - daemon_cpu) / args.requests * 1e6,
            (cpu_seconds(args.engine_pid) - engine_cpu) / (2 * args.requests) * 1e6))


async def one_stream(base, body):
    url = urllib.parse.urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (url.netloc.encode(), len(body)) + body)
    await writer.drain()
    status_line = await reader.readline()
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    raw = await reader.read()
    writer.close()
    if b" 200 " not in status_line:
        return False, 0, status_line.decode().strip()
    if headers.get("transfer-encoding") == "chunked":
        text, rest = b"", raw
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            text, rest = text + rest[:size], rest[size + 2:]
    else:
        text = raw
    events = [e for e in text.split(b"\n\n") if e.startswith(b"data: ")]
    done = bool(events) and events[-1] == b"data: [DONE]"
    return done, len(events) - 1, "" if done else "no [DONE]"


async def streams(base, args):
    body = json.dumps({"model": args.model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16,
                       "ignore_eos": True, "temperature": 0, "stream": True}).encode()
    start = time.perf_counter()
    results = await asyncio.gather(*(one_stream(base, body) for _ in range(args.streams)), return_exceptions=True)
    wall = time.perf_counter() - start
    errors = [r for r in results if isinstance(r, BaseException) or not r[0]]
    chunks = sum(r[1] for r in results if not isinstance(r, BaseException))
    return wall, errors, chunks


def concurrency(args):
    print("%d concurrent streamed chat completions (16 tokens each):" % args.streams)
    for name, base in [("gateway", args.gateway), ("direct", args.direct)]:
        wall, errors, chunks = asyncio.run(streams(base, args))
        print("  %-8s errors %d, chunks %d, wall %.2f s%s" % (name, len(errors), chunks, wall,
                                                            (" first error: %s" % (errors[0],)) if errors else ""))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--direct", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--daemon-pid", type=int, help="report the daemon's CPU time per gateway request")
    parser.add_argument("--engine-pid", type=int, help="report the engine's CPU time per request")
    args = parser.parse_args()
    latency(args)
    concurrency(args)


if __name__ == "__main__":
    main()
