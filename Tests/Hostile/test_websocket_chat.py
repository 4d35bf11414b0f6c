"""The WebSocket chat (`GET /api/v1/chat/ws`, docs/websocket-chat.md) with a real client, the `websockets` package,
against a daemon with the built-in engine on the tiny model: replies, stop, pings, sessions, API keys by header or
by a first auth frame (never the URL), and the limits on message size and frame rate."""

import asyncio
import json
import shutil

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import PATIENCE, TINY_MODEL, call, start_tiny_run

CHAT = {"type": "chat", "model": "tiny", "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 5, "ignore_eos": True, "temperature": 0}


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, PATIENCE))


def url(daemon, query=""):
    return f"ws://127.0.0.1:{daemon.port}/api/v1/chat/ws{query}"


async def reply(ws):
    """The frames of one reply: its text, and the done (or error) frame that ends it."""
    text = ""
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "delta":
            text += frame["content"]
        else:
            return text, frame


@pytest.fixture
def long_run(daemon, tmp_path):
    """A run `long` of the tiny model with a context of 32768 tokens: a reply of 20000 tokens takes seconds, so a
    stop sent after its first delta surely arrives mid-reply."""
    model = tmp_path / "qwen2-long"
    shutil.copytree(TINY_MODEL, model)
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = 32768
    (model / "config.json").write_text(json.dumps(config))
    start_tiny_run(daemon, model_dir=model, repo="acme/qwen2-long", name="long")
    yield "long"
    call(daemon.port, "POST", "/api/v1/models/running/long/stop")


def test_a_reply_streams_as_delta_frames_then_done_with_usage(daemon):
    status, _, body = call(daemon.port, "POST", "/api/v1/llm/chat", {k: v for k, v in CHAT.items() if k != "type"})
    assert status == 200, body
    expected = json.loads(body)["data"]["message"]["content"]

    async def chat():
        async with connect(url(daemon)) as ws:
            await ws.send(json.dumps(CHAT))
            return await reply(ws)

    text, done = run(chat())
    assert done["type"] == "done", done
    assert text == expected
    assert done["finish_reason"] == "length"
    assert done["usage"]["completion_tokens"] == 5


def test_stop_ends_the_reply(daemon, long_run):
    async def chat():
        async with connect(url(daemon)) as ws:
            await ws.send(json.dumps({**CHAT, "model": long_run, "max_tokens": 20000}))
            first = json.loads(await ws.recv())
            assert first["type"] == "delta", first
            await ws.send(json.dumps({"type": "stop"}))
            text, done = await reply(ws)
            # The connection serves the next chat.
            await ws.send(json.dumps(CHAT))
            _, after = await reply(ws)
            return text, done, after

    text, done, after = run(chat())
    assert done == {"type": "done", "finish_reason": "stopped"}, done
    assert after["type"] == "done" and after["usage"]["completion_tokens"] == 5


def test_a_stopped_session_reply_is_stored_as_partial(daemon, long_run):
    status, _, body = call(daemon.port, "POST", "/api/v1/sessions", {"model": long_run})
    assert status == 200, body
    session = json.loads(body)["data"]["id"]

    async def chat():
        async with connect(url(daemon)) as ws:
            await ws.send(json.dumps({"type": "chat", "session": session, "content": "Tell me a long story",
                                      "max_tokens": 20000, "ignore_eos": True, "temperature": 0}))
            first = json.loads(await ws.recv())
            assert first["type"] == "delta", first
            await ws.send(json.dumps({"type": "stop"}))
            text, done = await reply(ws)
            return first["content"] + text, done

    text, done = run(chat())
    assert done == {"type": "done", "finish_reason": "stopped"}, done
    status, _, body = call(daemon.port, "GET", f"/api/v1/sessions/{session}")
    last = json.loads(body)["data"]["messages"][-1]
    assert last["role"] == "assistant" and last["partial"] is True and last.get("finish_reason") is None, last
    # What the socket delivered is where the stored text begins (the engine may have written a little more).
    assert text and last["content"].startswith(text), (text, last["content"][:200])


def test_pings_are_answered(daemon):
    async def ping():
        async with connect(url(daemon)) as ws:
            await asyncio.wait_for(await ws.ping(), PATIENCE)
            await ws.send(json.dumps({"type": "ping"}))
            return json.loads(await ws.recv())

    assert run(ping()) == {"type": "pong"}


def test_a_session_continues_over_the_socket(daemon):
    status, _, body = call(daemon.port, "POST", "/api/v1/sessions",
                           {"model": "tiny", "options": {"max_tokens": 3, "ignore_eos": True}})
    assert status == 200, body
    session = json.loads(body)["data"]["id"]

    async def chat():
        async with connect(url(daemon)) as ws:
            await ws.send(json.dumps({"type": "chat", "session": session, "content": "Hi there"}))
            return await reply(ws)

    text, done = run(chat())
    assert done["type"] == "done", done
    status, _, body = call(daemon.port, "GET", f"/api/v1/sessions/{session}")
    messages = json.loads(body)["data"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "Hi there" and messages[1]["content"] == text


def test_bad_frames_get_error_frames_and_the_connection_stays(daemon):
    async def frames():
        async with connect(url(daemon)) as ws:
            answers = []
            for frame in ["not json", json.dumps([1]), json.dumps({"type": "nonsense"}),
                          json.dumps({"type": "chat", "messages": []}),
                          json.dumps({"type": "chat", "model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})]:
                await ws.send(frame)
                answers.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "ping"}))
            answers.append(json.loads(await ws.recv()))
            return answers

    answers = run(frames())
    assert all(a["type"] == "error" and a["message"] for a in answers[:-1]), answers
    assert "no-such-model" in answers[4]["message"]
    assert answers[-1] == {"type": "pong"}


def test_an_oversized_message_closes_the_connection_with_1009(daemon):
    async def oversized():
        async with connect(url(daemon), max_size=None) as ws:
            await ws.send("x" * (2 << 20))
            try:
                await ws.recv()
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

    assert run(oversized()) == 1009
    status, _, _ = call(daemon.port, "GET", "/health")
    assert status == 200


def test_too_many_frames_are_refused(daemon):
    async def flood():
        async with connect(url(daemon)) as ws:
            for _ in range(130):
                await ws.send(json.dumps({"type": "ping"}))
            answers = [json.loads(await ws.recv()) for _ in range(130)]
            return answers

    answers = run(flood())
    refused = [a for a in answers if a["type"] == "error"]
    assert len(refused) >= 10 and "too many frames" in refused[0]["message"], answers[-3:]
    assert answers[0] == {"type": "pong"}


def test_chat_frames_count_against_the_keys_rate_limit(daemon):
    status, _, body = call(daemon.control_socket, "POST", "/api/v1/keys", {"name": "ws-slow", "rate_per_minute": 3})
    assert status == 200, body
    key = json.loads(body)["data"]["key"]
    try:
        async def chats():
            async with connect(url(daemon), additional_headers={"Authorization": f"Bearer {key}"}) as ws:
                ends = []
                for _ in range(4):
                    await ws.send(json.dumps(CHAT))
                    ends.append((await reply(ws))[1])
                # Pings are not requests: the connection still answers them.
                await ws.send(json.dumps({"type": "ping"}))
                return ends, json.loads(await ws.recv())

        ends, pong = run(chats())
        # The upgrade is the key's first request of the minute, the two chats after it its second and third.
        assert [end["type"] for end in ends] == ["done", "done", "error", "error"], ends
        assert "limited to 3 requests per minute" in ends[2]["message"], ends[2]
        assert pong == {"type": "pong"}
        # The bucket is the key's, not the connection's: a request over HTTP is refused as well.
        status, _, body = call(daemon.port, "GET", "/api/v1/sessions", headers={"Authorization": f"Bearer {key}"})
        assert status == 429 and b"limited to 3 requests per minute" in body, body
    finally:
        daemon.revoke_keys()


def test_plain_http_gets_426(daemon):
    status, _, body = call(daemon.port, "GET", "/api/v1/chat/ws")
    assert status == 426 and b"WebSocket" in body


def test_keys_by_header_or_first_frame_never_the_url(daemon):
    status, _, body = call(daemon.control_socket, "POST", "/api/v1/keys", {"name": "ws-client"})
    assert status == 200, body
    key = json.loads(body)["data"]["key"]
    try:
        async def by_header():
            async with connect(url(daemon), additional_headers={"Authorization": f"Bearer {key}"}) as ws:
                await ws.send(json.dumps(CHAT))
                return await reply(ws)

        async def by_frame():
            async with connect(url(daemon)) as ws:
                await ws.send(json.dumps({"type": "auth", "key": key}))
                await ws.send(json.dumps(CHAT))
                return await reply(ws)

        async def in_url():
            async with connect(url(daemon, f"?key={key}&api_key={key}&token={key}")) as ws:
                await ws.send(json.dumps(CHAT))
                error = json.loads(await ws.recv())
                try:
                    await ws.recv()
                except ConnectionClosed as closed:
                    return error, closed.rcvd.code

        async def wrong_frame():
            async with connect(url(daemon)) as ws:
                await ws.send(json.dumps({"type": "auth", "key": "mdk_wrong"}))
                error = json.loads(await ws.recv())
                try:
                    await ws.recv()
                except ConnectionClosed as closed:
                    return error, closed.rcvd.code

        async def wrong_header():
            try:
                async with connect(url(daemon), additional_headers={"Authorization": "Bearer mdk_wrong"}):
                    return None
            except InvalidStatus as refused:
                return refused.response.status_code

        assert run(by_header())[1]["type"] == "done"
        assert run(by_frame())[1]["type"] == "done"
        error, code = run(in_url())
        assert error["type"] == "error" and "auth" in error["message"] and code == 1008, (error, code)
        error, code = run(wrong_frame())
        assert error["type"] == "error" and "invalid" in error["message"] and code == 1008, (error, code)
        # A refused upgrade is answered 400 by the upgrade handler, before the router (which would say 401).
        assert run(wrong_header()) == 400
        assert key not in daemon.log
    finally:
        daemon.revoke_keys()
