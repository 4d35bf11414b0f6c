#!/usr/bin/env python3
"""A minimal Hugging Face hub on loopback for benchmarks (docs/design/hubs.md, Hugging Face), serving files from a directory.

Usage: bench-fakehub.py <repo-dir> <port> <repo-id>
Regular files (config.json) are served by the hub origin (http://127.0.0.1:<port>); LFS files (*.safetensors)
by a second origin, http://127.0.0.1:<port+1>/cdn/<sha256>, so clients must drop Authorization there.
Bodies go out with os.sendfile, so the server is not the bottleneck.
"""
import hashlib, json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

root, port, repo = sys.argv[1], int(sys.argv[2]), sys.argv[3]
COMMIT = "b" * 40
files = {}
for name in sorted(os.listdir(root)):
    path = os.path.join(root, name)
    size = os.path.getsize(path)
    lfs = name.endswith(".safetensors")
    h = hashlib.sha256() if lfs else hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    files[name] = {"path": path, "size": size, "lfs": lfs, "etag": h.hexdigest()}
by_sha = {v["etag"]: v for v in files.values() if v["lfs"]}



class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, value):
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_file(self, info, head=False, extra=()):
        size, start, end = info["size"], 0, info["size"] - 1
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            # "bytes=a-" or "bytes=a-b" (b inclusive), as a CDN answers them.
            first, last = rng[6:].split("-")
            start = int(first)
            if last:
                end = min(int(last), size - 1)
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        else:
            self.send_response(200)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(end + 1 - start))
        self.end_headers()
        if head:
            return
        self.wfile.flush()
        with open(info["path"], "rb") as f:
            offset, left = start, end + 1 - start
            while left > 0:
                sent = os.sendfile(self.connection.fileno(), f.fileno(), offset, min(left, 1 << 30))
                if sent == 0:
                    break
                offset += sent
                left -= sent

    def route(self, head):
        path = self.path.split("?")[0]
        if path.startswith("/api/models/%s/revision/" % repo):
            return self.send_json({"id": repo, "sha": COMMIT, "private": False, "gated": False,
                                   "siblings": [{"rfilename": n} for n in files]})
        if path.startswith("/api/models/%s/tree/" % repo):
            out = []
            for n, v in files.items():
                e = {"type": "file", "oid": v["etag"] if not v["lfs"] else "0" * 40, "size": v["size"], "path": n}
                if v["lfs"]:
                    e["lfs"] = {"oid": v["etag"], "size": v["size"], "pointerSize": 134}
                out.append(e)
            return self.send_json(out)
        prefix = "/%s/resolve/" % repo
        if path.startswith(prefix):
            name = path[len(prefix):].split("/", 1)[1]
            info = files.get(name)
            if info is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            if info["lfs"]:
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:%d/cdn/%s" % (port + 1, info["etag"]))
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("X-Linked-Etag", '"%s"' % info["etag"])
                self.send_header("X-Linked-Size", str(info["size"]))
                self.send_header("Content-Length", "0")
                return self.end_headers()
            return self.send_file(info, head, [("ETag", '"%s"' % info["etag"]), ("X-Repo-Commit", COMMIT)])
        if path.startswith("/cdn/") and path[5:] in by_sha:
            return self.send_file(by_sha[path[5:]], head)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.route(False)

    def do_HEAD(self):
        self.route(True)


import threading
ThreadingHTTPServer.daemon_threads = True
cdn = ThreadingHTTPServer(("127.0.0.1", port + 1), Handler)
threading.Thread(target=cdn.serve_forever, daemon=True).start()
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
