#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver on loopback that keeps nothing, for the tracing benchmarks (docs/benchmarks.md):
`POST /v1/traces` is answered 200 and its spans counted (decoded with `opentelemetry-proto`). On SIGTERM or
SIGINT it prints how many exports and spans it received.
    python3 scripts/otlp-sink.py PORT"""

import http.server
import signal
import sys
import threading

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


class Sink(http.server.ThreadingHTTPServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            spans = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
            with self.server.lock:
                self.server.exports += 1
                self.server.spans += spans
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200 if self.path == "/v1/traces" else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    def __init__(self, port):
        super().__init__(("127.0.0.1", port), self.Handler)
        self.daemon_threads = True
        self.lock = threading.Lock()
        self.exports = 0
        self.spans = 0


def main():
    sink = Sink(int(sys.argv[1]))

    def stop(*_):
        print(f"otlp-sink: {sink.exports} exports, {sink.spans} spans", flush=True)
        threading.Thread(target=sink.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sink.serve_forever()


if __name__ == "__main__":
    main()
