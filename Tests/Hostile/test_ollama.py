"""Ollama's API (docs/ollama-api.md) through the clients that speak it: the `ollama` Python library, LangChain's
`ChatOllama`, and the requests Open WebUI makes, against a daemon with the built-in engine on the tiny model, pulled
from a hub on loopback. Nothing here talks to anything but 127.0.0.1."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone

import ollama
import pytest
from langchain_ollama import ChatOllama

from conftest import MODELD, PATIENCE, TINY_MODEL, Daemon, RepoHub, call

REPO = "acme/qwen2-tiny"
NAME = f"{REPO}:latest"
MESSAGES = [{"role": "user", "content": "Hello"}]
# Greedy and short, so that the daemon's answer can be compared with the engine's own.
OPTIONS = {"temperature": 0, "num_predict": 12}


# The pull service reports a file's bytes every MiB: a file of 3 MiB beside the model shows progress part-way.
PADDING = 3 << 20


@pytest.fixture(scope="module")
def hub(workdir):
    repo = workdir / "ollama-repo"
    shutil.copytree(TINY_MODEL, repo)
    (repo / "padding.txt").write_bytes(bytes(range(256)) * (PADDING // 256))
    # The tiny model's first token is its end of text; with another end-of-text id it writes text (the same for
    # every client), which the comparisons below need.
    for name in ("config.json", "generation_config.json"):
        config = json.loads((repo / name).read_text())
        config["eos_token_id"] = 599
        (repo / name).write_text(json.dumps(config))
    server = RepoHub(REPO, repo, bytes_per_second=4_000_000)
    server.directory = repo
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def served(workdir, hub):
    """A daemon with an Ollama listener (`ollama_port`) whose Ollama API has pulled the tiny model from the hub;
    `progress` holds the pull's lines."""
    server = Daemon(workdir / "ollama", extra_args=["--ollama-listen", "127.0.0.1:0"],
                    extra_env={"HF_ENDPOINT": hub.endpoint, "MODELSCOPE_ENDPOINT": hub.endpoint})
    try:
        # The Ollama listener logs its address under `ollama=`, the daemon's under `socket=`.
        pattern = re.compile(r"ollama=127\.0\.0\.1:(\d+)[^\n]* listening")
        wait_until(lambda: pattern.search(server.log), "the Ollama listener")
        server.ollama_port = int(pattern.search(server.log).group(1))
        client = ollama.Client(host=f"http://127.0.0.1:{server.port}", timeout=PATIENCE)
        server.progress = [dict(line) for line in client.pull(REPO, stream=True)]
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(served):
    return ollama.Client(host=f"http://127.0.0.1:{served.port}", timeout=PATIENCE)


def openai_chat(server, messages, max_tokens):
    status, _, body = call(server.port, "POST", "/v1/chat/completions",
                           {"model": REPO, "messages": messages, "temperature": 0, "max_tokens": max_tokens})
    assert status == 200, body
    return json.loads(body)["choices"][0]["message"]["content"]


def loaded(client):
    return [model.model for model in client.ps().models]


def wait_until(condition, what):
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_pull_streams_ollama_progress(served):
    statuses = [line["status"] for line in served.progress]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    files = [line for line in served.progress if line["status"].startswith("pulling ") and line.get("digest")]
    assert {line["digest"] for line in files} == {path.name for path in TINY_MODEL.iterdir()} | {"padding.txt"}
    padding = [line for line in files if line["digest"] == "padding.txt"]
    assert all(line["total"] == PADDING for line in padding) and padding[-1]["completed"] == PADDING
    assert any(0 < (line.get("completed") or 0) < PADDING for line in padding), served.progress


def test_pull_of_an_unknown_model_is_an_error(client):
    with pytest.raises(ollama.ResponseError) as error:
        list(client.pull("acme/none", stream=True))
    assert "acme/none" in error.value.error


def test_version(served):
    status, _, body = call(served.port, "GET", "/api/version")
    assert status == 200 and json.loads(body) == {"version": "0.32.15"}


def test_list(client, hub):
    models = {model.model: model for model in client.list().models}
    model = models[NAME]
    assert model.size == sum(path.stat().st_size for path in hub.directory.iterdir())
    assert model.details.format == "safetensors"
    assert model.details.family == "qwen2"
    assert model.details.families == ["qwen2"]
    assert model.details.quantization_level == "F32"
    assert model.details.parameter_size.endswith("K")
    assert model.modified_at is not None and model.digest


def test_show(client):
    shown = client.show(REPO)
    config = json.loads((TINY_MODEL / "config.json").read_text())
    tokenizer_config = json.loads((TINY_MODEL / "tokenizer_config.json").read_text())
    assert shown.modelinfo["general.architecture"] == "qwen2"
    assert shown.modelinfo["qwen2.context_length"] == config["max_position_embeddings"]
    assert shown.modelinfo["qwen2.embedding_length"] == config["hidden_size"]
    assert shown.modelinfo["qwen2.block_count"] == config["num_hidden_layers"]
    assert shown.modelinfo["general.parameter_count"] > 0
    assert shown.template == tokenizer_config["chat_template"]
    assert "completion" in shown.capabilities and "embedding" not in shown.capabilities
    assert ("tools" in shown.capabilities) == ("tools" in tokenizer_config["chat_template"])
    assert shown.details.family == "qwen2"


def test_show_of_an_unknown_model_is_a_404(client):
    with pytest.raises(ollama.ResponseError) as error:
        client.show("acme/none")
    assert error.value.status_code == 404
    assert error.value.error == 'model "acme/none" not found, try pulling it first'


def test_chat_equals_the_engine_and_streams_the_same(client, served):
    expected = openai_chat(served, MESSAGES, OPTIONS["num_predict"])
    assert expected
    reply = client.chat(REPO, messages=MESSAGES, options=OPTIONS, stream=False)
    assert reply.message.role == "assistant"
    assert reply.message.content == expected
    assert reply.done and reply.done_reason == "length"
    assert reply.eval_count == OPTIONS["num_predict"] and reply.prompt_eval_count > 0
    assert reply.total_duration >= reply.prompt_eval_duration + reply.eval_duration > 0
    chunks = list(client.chat(NAME, messages=MESSAGES, options=OPTIONS, stream=True))
    assert "".join(chunk.message.content for chunk in chunks) == expected
    assert [chunk.done for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].eval_count == reply.eval_count


def test_generate_equals_the_engine_and_streams_the_same(client, served):
    prompt = "Hello"
    expected = openai_chat(served, [{"role": "user", "content": prompt}], OPTIONS["num_predict"])
    reply = client.generate(REPO, prompt=prompt, options=OPTIONS, stream=False)
    assert reply.response == expected
    assert reply.done and reply.eval_count > 0
    chunks = list(client.generate(REPO, prompt=prompt, options=OPTIONS, stream=True))
    assert "".join(chunk.response for chunk in chunks) == expected
    assert chunks[-1].done and chunks[-1].total_duration > 0


def test_format_on_the_builtin_engine_constrains_the_reply(client):
    # The built-in engine constrains decoding (docs/builtin-engine.md, Structured output): JSON mode and a schema.
    assert isinstance(json.loads(client.chat(REPO, messages=MESSAGES, format="json", options=OPTIONS | {"num_predict": 40}).message.content), dict)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}}, "required": ["n", "ok"]}
    reply = client.generate(REPO, prompt="A number:", format=schema, options={"temperature": 0.8, "seed": 2, "num_predict": 40})
    value = json.loads(reply.response)
    assert set(value) == {"n", "ok"} and type(value["n"]) is int and type(value["ok"]) is bool
    chunks = list(client.chat(REPO, messages=MESSAGES, format=schema, options=OPTIONS | {"num_predict": 40}, stream=True))
    assert set(json.loads("".join(chunk.message.content for chunk in chunks))) == {"n", "ok"}
    # A keyword the engine cannot constrain to is a 400 that names it.
    with pytest.raises(ollama.ResponseError) as error:
        client.chat(REPO, messages=MESSAGES, format={"type": "integer", "minimum": 1})
    assert error.value.status_code == 400
    assert '"minimum"' in error.value.error


def test_images_to_a_model_without_vision_are_a_clear_400(client):
    with pytest.raises(ollama.ResponseError) as error:
        client.chat(REPO, messages=[{"role": "user", "content": "what is this?", "images": [b"\x89PNG\r\n"]}])
    assert error.value.status_code == 400
    assert "images" in error.value.error


def test_tools_pass_through_to_the_template(client):
    tool = {"type": "function", "function": {"name": "add", "description": "Adds two numbers",
                                             "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}
    plain = client.chat(REPO, messages=MESSAGES, options=OPTIONS)
    with_tools = client.chat(REPO, messages=MESSAGES, options=OPTIONS, tools=[tool])
    # The template renders the tool into the prompt: more prompt tokens, the same reply shape.
    assert with_tools.prompt_eval_count > plain.prompt_eval_count
    assert with_tools.done and with_tools.message.role == "assistant"


def test_embed_on_the_builtin_engine_is_a_clear_400(client):
    with pytest.raises(ollama.ResponseError) as error:
        client.embed(REPO, input="hello")
    assert error.value.status_code == 400
    assert "embeddings" in error.value.error


def test_ps_and_load_and_unload_by_keep_alive(client):
    client.generate(REPO, prompt="", keep_alive=0)
    assert NAME not in loaded(client)
    reply = client.generate(REPO, prompt="", keep_alive="10m")
    assert reply.done_reason == "load"
    running = {model.model: model for model in client.ps().models}
    assert NAME in running
    model = running[NAME]
    assert model.size_vram == 0 and model.context_length == 512
    assert timedelta(minutes=9) < model.expires_at - datetime.now(timezone.utc) <= timedelta(minutes=10, seconds=5)
    reply = client.chat(REPO, messages=[], keep_alive=0)
    assert reply.done_reason == "unload"
    assert NAME not in loaded(client)
    # keep_alive 0 with a request: the model is unloaded once the reply is out.
    client.chat(REPO, messages=MESSAGES, options=OPTIONS, keep_alive=0)
    wait_until(lambda: NAME not in loaded(client), "the unload after the reply")


def test_chat_ollama_invoke_and_stream(served, client):
    expected = openai_chat(served, MESSAGES, 8)
    assert expected
    chat = ChatOllama(model=REPO, base_url=f"http://127.0.0.1:{served.port}", temperature=0, num_predict=8)
    assert chat.invoke("Hello").content == expected
    assert "".join(chunk.content for chunk in chat.stream("Hello")) == expected


def test_open_webui_sequence(served):
    """What Open WebUI does with an Ollama connection: version, tags, ps, a streamed chat read line by line (each
    line's `message.content`, the last one's `done_reason` and counts), then an unload with `keep_alive: 0`."""
    status, _, body = call(served.port, "GET", "/api/version")
    assert status == 200 and set(json.loads(body)) == {"version"}
    status, _, body = call(served.port, "GET", "/api/tags")
    tags = json.loads(body)["models"]
    entry = next(model for model in tags if model["name"] == NAME)
    assert set(entry) >= {"name", "model", "modified_at", "size", "digest", "details"}
    assert set(entry["details"]) >= {"parent_model", "format", "family", "families", "parameter_size", "quantization_level"}
    status, _, body = call(served.port, "GET", "/api/ps")
    assert status == 200 and isinstance(json.loads(body)["models"], list)

    status, headers, body = call(served.port, "POST", "/api/chat", {
        "model": NAME, "messages": MESSAGES, "stream": True, "options": OPTIONS})
    assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in body.decode().splitlines()]
    *chunks, last = lines
    for line in chunks:
        assert set(line) == {"model", "created_at", "message", "done"}
        assert line["model"] == NAME and line["done"] is False
        assert line["message"]["role"] == "assistant" and isinstance(line["message"]["content"], str)
        datetime.fromisoformat(line["created_at"])
    assert last["done"] is True and last["done_reason"] in ("stop", "length")
    for field in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"):
        assert isinstance(last[field], int) and last[field] >= 0, field
    assert last["eval_count"] > 0 and last["eval_duration"] > 0
    assert "".join(line["message"]["content"] for line in chunks) == openai_chat(served, MESSAGES, OPTIONS["num_predict"])

    status, _, body = call(served.port, "POST", "/api/generate", {"model": NAME, "keep_alive": 0})
    reply = json.loads(body)
    assert status == 200 and reply["done"] is True and reply["done_reason"] == "unload"
    status, _, body = call(served.port, "GET", "/api/ps")
    assert NAME not in [model["name"] for model in json.loads(body)["models"]]


def test_errors_are_ollama_shaped(served):
    status, _, body = call(served.port, "POST", "/api/chat", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and set(json.loads(body)) == {"error"}
    status, _, body = call(served.port, "POST", "/api/chat", {"messages": MESSAGES})
    assert status == 400 and json.loads(body) == {"error": "model is required"}
    status, _, body = call(served.port, "POST", "/api/chat", {"model": "nope", "messages": MESSAGES})
    assert status == 404 and json.loads(body) == {"error": 'model "nope" not found, try pulling it first'}
    status, _, body = call(served.port, "POST", "/api/generate", {"model": REPO, "prompt": "x", "options": {"temperature": "hot"}})
    assert status == 400 and "temperature" in json.loads(body)["error"]
    for method, path in (("POST", "/api/create"), ("POST", "/api/push"), ("HEAD", "/api/blobs/sha256:00")):
        status, _, body = call(served.port, method, path, {"model": "x"})
        assert status == 501, path
        if method != "HEAD":
            assert "modelctl" in json.loads(body)["error"]


def test_copy_then_delete(client):
    client.copy(REPO, "tiny-copy")
    names = [model.model for model in client.list().models]
    assert "tiny-copy:latest" in names and NAME in names
    assert client.show("tiny-copy").details.family == "qwen2"
    reply = client.chat("tiny-copy", messages=MESSAGES, options=OPTIONS, keep_alive=0)
    assert reply.message.content
    client.delete("tiny-copy")
    names = [model.model for model in client.list().models]
    assert "tiny-copy:latest" not in names and NAME in names
    with pytest.raises(ollama.ResponseError) as error:
        client.copy("acme/none", "other")
    assert error.value.status_code == 404


def test_the_ollama_listener_serves_ollama_and_openai_alone(served):
    status, headers, body = call(served.ollama_port, "GET", "/")
    assert status == 200 and body == b"Ollama is running"
    status, _, body = call(served.ollama_port, "HEAD", "/")
    assert status == 200
    client = ollama.Client(host=f"http://127.0.0.1:{served.ollama_port}", timeout=PATIENCE)
    assert NAME in [model.model for model in client.list().models]
    expected = openai_chat(served, MESSAGES, OPTIONS["num_predict"])
    assert client.chat(REPO, messages=MESSAGES, options=OPTIONS).message.content == expected
    # Ollama serves OpenAI's API beside its own; the management API is the daemon's listener's alone.
    status, _, body = call(served.ollama_port, "POST", "/v1/chat/completions",
                           {"model": REPO, "messages": MESSAGES, "temperature": 0, "max_tokens": OPTIONS["num_predict"]})
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == expected
    status, _, _ = call(served.ollama_port, "GET", "/api/v1/status")
    assert status == 404
    status, _, body = call(served.port, "GET", "/")
    assert body != b"Ollama is running"


def request_line(server, request_id):
    """The daemon's request log line for `request_id` (`X-Request-Id`), once written."""
    lines = []
    def seen():
        lines[:] = [line for line in server.log.splitlines() if request_id in line and " method=" in line]
        return lines
    wait_until(seen, f"the request line of {request_id}")
    return lines[0]


# What differs between two answers to the same request: when they were written and how long they took.
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def comparable(line):
    """A reply object with its time and durations checked for their type and set aside."""
    line = dict(line)
    datetime.fromisoformat(line.pop("created_at"))
    if line.get("done"):
        for field in DURATIONS:
            assert isinstance(line.pop(field), int), field
    return line


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("path, fields", [("/api/chat", {"messages": MESSAGES}), ("/api/generate", {"prompt": "Hello"})],
                         ids=["chat", "generate"])
def test_fast_path_answers_as_the_router_does(served, path, fields, stream):
    """A chat or generate for a ready run is answered below the router (`via=fast-path`); the same greedy request
    through the router (which `Connection: close` takes) gets the same reply, line by line and field by field."""
    status, _, body = call(served.port, "POST", "/api/generate", {"model": REPO, "keep_alive": "10m"})
    assert status == 200 and json.loads(body)["done_reason"] == "load", body
    request = {"model": NAME, "options": OPTIONS, "stream": stream, **fields}
    fast = call(served.port, "POST", path, request)
    routed = call(served.port, "POST", path, request, {"Connection": "close"})
    assert "status=200 via=fast-path" in request_line(served, fast[1]["X-Request-Id"])
    line = request_line(served, routed[1]["X-Request-Id"])
    assert "status=200" in line and "via=fast-path" not in line
    for status, headers, _ in (fast, routed):
        assert status == 200
        assert headers["Content-Type"] == ("application/x-ndjson" if stream else "application/json; charset=utf-8")
    fast_lines, routed_lines = ([comparable(json.loads(line)) for line in reply[2].decode().splitlines()] for reply in (fast, routed))
    assert fast_lines == routed_lines
    *chunks, last = fast_lines
    assert last["done"] is True and last["done_reason"] == "length" and last["eval_count"] == OPTIONS["num_predict"]
    assert len(chunks) > 1 if stream else not chunks
    text = "".join(line["message"]["content"] if "message" in line else line["response"] for line in fast_lines)
    assert text == openai_chat(served, [{"role": "user", "content": "Hello"}], OPTIONS["num_predict"])


def test_fast_path_applies_keep_alive_and_serves_the_ollama_listener(served, client):
    """keep_alive on a request the fast path answers becomes the run's, as on the router's path; the Ollama
    listener's requests take the fast path too."""
    client.generate(REPO, prompt="", keep_alive="10m")
    status, headers, _ = call(served.ollama_port, "POST", "/api/chat",
                              {"model": REPO, "messages": MESSAGES, "options": OPTIONS, "keep_alive": "3m"})
    assert status == 200 and "via=fast-path" in request_line(served, headers["X-Request-Id"])
    expires = {model.model: model.expires_at for model in client.ps().models}[NAME] - datetime.now(timezone.utc)
    assert timedelta(minutes=2) < expires <= timedelta(minutes=3, seconds=5)
    status, headers, _ = call(served.port, "POST", "/api/generate",
                              {"model": REPO, "prompt": "Hello", "options": OPTIONS, "keep_alive": 0, "stream": False})
    assert status == 200 and "via=fast-path" in request_line(served, headers["X-Request-Id"])
    wait_until(lambda: NAME not in loaded(client), "the unload after the reply")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_socket_activated_ollama_listener(workdir):
    """Under systemd-socket-activate with the three named sockets: the first connection, to the Ollama socket, starts
    the daemon, which serves Ollama's API there and the daemon's on `http`."""
    if not os.access("/usr/bin/systemd-socket-activate", os.X_OK):
        pytest.skip("no systemd-socket-activate")
    root = workdir / "ollama-activated"
    root.mkdir()
    http_port, ollama_port = free_port(), free_port()
    control = root / "control.sock"
    process = subprocess.Popen(
        ["/usr/bin/systemd-socket-activate", "-l", f"127.0.0.1:{http_port}", "-l", str(control), "-l", f"127.0.0.1:{ollama_port}",
         "--fdname=http:control:ollama", "-E", f"MODELD_DATA_DIR={root / 'data'}", str(MODELD)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(control.exists, "the sockets")
        status, _, body = call(ollama_port, "GET", "/")
        assert status == 200 and body == b"Ollama is running"
        status, _, body = call(ollama_port, "GET", "/api/version")
        assert status == 200 and json.loads(body) == {"version": "0.32.15"}
        assert ollama.Client(host=f"http://127.0.0.1:{ollama_port}", timeout=PATIENCE).list().models == []
        status, _, _ = call(ollama_port, "GET", "/api/v1/status")
        assert status == 404
        status, _, body = call(http_port, "GET", "/api/v1/status")
        assert status == 200, body
        status, _, body = call(http_port, "GET", "/api/tags")
        assert status == 200 and json.loads(body) == {"models": []}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    log = process.stderr.read().decode("utf-8", "replace")
    assert process.returncode == 0, log
    assert "socket-activated" in log and "ollama" in log, log


def test_keys_of_both_scopes(served):
    def create(scope):
        status, _, body = call(served.control_socket, "POST", "/api/v1/keys", {"name": f"ollama-{scope}", "scope": scope})
        assert status == 200, body
        return json.loads(body)["data"]["key"]

    inference, admin = create("inference"), create("admin")
    try:
        base = f"http://127.0.0.1:{served.port}"
        anonymous = ollama.Client(host=base, timeout=PATIENCE)
        with pytest.raises(ollama.ResponseError) as error:
            anonymous.list()
        assert error.value.status_code == 401 and "API key" in error.value.error
        reader = ollama.Client(host=base, timeout=PATIENCE, headers={"Authorization": f"Bearer {inference}"})
        assert NAME in [model.model for model in reader.list().models]
        assert reader.show(REPO).details.family == "qwen2"
        # A chat the keys refuse (for a ready run, which the fast path would answer) changes nothing, not the
        # run's keep-alive either.
        reader.generate(REPO, prompt="", keep_alive="10m")
        status, _, body = call(served.port, "POST", "/api/chat", {"model": REPO, "messages": MESSAGES, "keep_alive": "1m"})
        assert status == 401 and "API key" in json.loads(body)["error"]
        expires = {model.model: model.expires_at for model in reader.ps().models}[NAME] - datetime.now(timezone.utc)
        assert timedelta(minutes=9) < expires <= timedelta(minutes=10, seconds=5)
        assert reader.chat(REPO, messages=MESSAGES, options=OPTIONS, keep_alive=0).message.content
        with pytest.raises(ollama.ResponseError) as error:
            reader.copy(REPO, "not-allowed")
        assert error.value.status_code == 403 and "admin" in error.value.error
        with pytest.raises(ollama.ResponseError) as error:
            reader.delete(REPO)
        assert error.value.status_code == 403
        administrator = ollama.Client(host=base, timeout=PATIENCE, headers={"Authorization": f"Bearer {admin}"})
        administrator.copy(REPO, "allowed")
        administrator.delete("allowed")
        # The Ollama listener takes the same keys.
        listener = f"http://127.0.0.1:{served.ollama_port}"
        with pytest.raises(ollama.ResponseError) as error:
            ollama.Client(host=listener, timeout=PATIENCE).list()
        assert error.value.status_code == 401
        reader = ollama.Client(host=listener, timeout=PATIENCE, headers={"Authorization": f"Bearer {inference}"})
        assert NAME in [model.model for model in reader.list().models]
        with pytest.raises(ollama.ResponseError) as error:
            reader.pull(REPO)
        assert error.value.status_code == 403
    finally:
        served.revoke_keys()


def test_delete_removes_the_model(client):
    client.generate(REPO, prompt="", keep_alive=0)
    client.delete(REPO)
    assert NAME not in [model.model for model in client.list().models]
    with pytest.raises(ollama.ResponseError) as error:
        client.delete(REPO)
    assert error.value.status_code == 404
