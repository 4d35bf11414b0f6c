#!/usr/bin/env python3
"""One engine's figures for scripts/bench-engines.sh: tokens/s straight to the engine and through modeld's gateway,
and the latency the gateway adds.

Usage: bench-engines.py --gateway URL --direct URL --model NAME [--gen-tokens N] [--repeats N] [--requests N]

1. Tokens/s: --repeats /v1/completions of --gen-tokens tokens each (greedy, ignore_eos, a one-word prompt) through
   each side, alternating (bench-gateway.py's `alternate`); completion tokens over the request's wall time, the
   median per side.
2. Added latency: --requests sequential 1-token completions per side, alternating, after 10 to warm up; the p50 of
   each side, the added p50 and the median of the paired differences.

Prints one JSON object.
"""
import argparse, importlib.util, json, statistics
from pathlib import Path

spec = importlib.util.spec_from_file_location("bench_gateway", Path(__file__).with_name("bench-gateway.py"))
bench_gateway = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_gateway)
Client, alternate, percentile = bench_gateway.Client, bench_gateway.alternate, bench_gateway.percentile


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--direct", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    gateway, direct = Client(args.gateway), Client(args.direct)

    def completion(tokens):
        return json.dumps({"model": args.model, "prompt": "Hello", "max_tokens": tokens, "temperature": 0,
                           "ignore_eos": True}).encode()

    alternate(gateway, direct, completion(args.gen_tokens), 1)
    through, straight, via, own = alternate(gateway, direct, completion(args.gen_tokens), args.repeats)
    rates = {}
    for side, times, replies in [("gateway", through, via), ("direct", straight, own)]:
        tokens = [reply["usage"]["completion_tokens"] for reply in replies]
        assert all(count == args.gen_tokens for count in tokens), f"{side}: {tokens} tokens, not {args.gen_tokens}"
        rates[side] = statistics.median(count / (ms / 1000) for count, ms in zip(tokens, times))

    alternate(gateway, direct, completion(1), 10)
    through, straight, _, _ = alternate(gateway, direct, completion(1), args.requests)
    print(json.dumps({
        "tokens_per_second": rates,
        "p50_ms": {"gateway": percentile(through, 50), "direct": percentile(straight, 50)},
        "added_p50_ms": percentile(through, 50) - percentile(straight, 50),
        "added_paired_median_ms": statistics.median(g - d for g, d in zip(through, straight)),
    }))


main()
