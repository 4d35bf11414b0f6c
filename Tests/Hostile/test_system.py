"""`GET /api/v1/system` and `modelctl system` on a host whose GPUs a fake `nvidia-smi` on PATH reports (answering
the inventory query exactly as the real one, one CSV line per GPU), and GPU placement through the daemon: a start
without `gpus` is placed on the GPU with the most free memory, the run holds it, and a start that fits nowhere is
refused before launch with the numbers."""

import json
import os
import subprocess

from conftest import TINY_MODEL, Daemon, call
from test_real_engines import MODELCTL

QUERY = "--query-gpu=index,name,memory.total,memory.free,utilization.gpu --format=csv,noheader,nounits"
GPUS = ["0, NVIDIA L4, 23034, 20000, 7", "1, NVIDIA L4, 23034, 22500, [N/A]"]


def fake_nvidia_smi(directory, lines):
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "nvidia-smi"
    script.write_text("#!/bin/sh\n"
                      f'[ "$*" = "{QUERY}" ] || {{ echo "unexpected arguments: $*" >&2; exit 2; }}\n'
                      "cat <<'CSV'\n" + "\n".join(lines) + "\nCSV\n")
    script.chmod(0o755)
    return directory


def test_system_and_placement(workdir):
    bin_dir = fake_nvidia_smi(workdir / "gpu-bin", GPUS)
    daemon = Daemon(workdir / "system", extra_env={"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"})
    try:
        status, _, body = call(daemon.control_socket, "GET", "/api/v1/system")
        assert status == 200, body
        system = json.loads(body)["data"]
        assert system["gpus"] == [
            {"index": 0, "name": "NVIDIA L4", "memory_total_mib": 23034, "memory_free_mib": 20000, "utilization_percent": 7, "runs": []},
            {"index": 1, "name": "NVIDIA L4", "memory_total_mib": 23034, "memory_free_mib": 22500, "runs": []},
        ]
        assert system["cpu"]["logical_cpus"] == os.cpu_count() or system["cpu"]["logical_cpus"] >= 1
        assert 0 < system["memory"]["available_bytes"] <= system["memory"]["total_bytes"]
        assert 0 < system["disk"]["free_bytes"] <= system["disk"]["total_bytes"]
        assert system["disk"]["path"].rstrip("/") == str(daemon.data)

        # The tiny model on the fake vLLM: placed on GPU 1 (the most free), then GPU 0, then nowhere.
        status, _, body = call(daemon.port, "POST", "/api/v1/models/adopt",
                               {"path": str(TINY_MODEL), "kind": "dir", "name": "acme/qwen2-tiny"})
        assert status == 200, body
        placed = []
        for name in ("one", "two"):
            status, _, body = call(daemon.port, "POST", "/api/v1/models/start", {"model": "acme/qwen2-tiny", "engine": "vllm", "name": name})
            assert status == 200, body
            placed.append(json.loads(body)["data"]["gpus"])
        assert placed == ["1", "0"]
        status, _, body = call(daemon.port, "POST", "/api/v1/models/start", {"model": "acme/qwen2-tiny", "engine": "vllm", "name": "three"})
        assert status == 409, body
        message = json.loads(body)["msg"]
        assert "three needs about" in message and "GPU 0 held by run two; GPU 1 held by run one" in message, message

        shown = subprocess.run([str(MODELCTL), "system"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
                               env={"PATH": "/usr/bin:/bin", "MODELD_CONTROL_SOCKET": str(daemon.control_socket)})
        assert shown.returncode == 0, shown.stderr
        assert "GPU 0   NVIDIA L4: 19.5 GiB free of 22.5 GiB, 7 % busy, held by two" in shown.stdout, shown.stdout
        assert "GPU 1   NVIDIA L4: 22.0 GiB free of 22.5 GiB, held by one" in shown.stdout, shown.stdout
    finally:
        daemon.stop()
