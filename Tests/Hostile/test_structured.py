"""Structured output and tool calls on the built-in engine (docs/builtin-engine.md, Structured output and Tool
calls), through the real `openai` client against a daemon running the tiny random model: whatever the model's
weights would say, every reply parses and validates against its schema (`jsonschema`), greedy and sampled, streamed
and not. Nothing here talks to anything but 127.0.0.1."""

import json
import shutil
import time

import jsonschema
import openai
import pytest

from conftest import PATIENCE, TINY_MODEL, call

MESSAGES = [{"role": "user", "content": "Describe a person as JSON."}]

SCHEMAS = {
    "person": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 12},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
            "pet": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/pet"}]},
        },
        "required": ["name", "age", "pet"],
        "$defs": {"pet": {"type": "object", "properties": {"kind": {"const": "cat"}, "lives": {"type": "number"}},
                          "required": ["kind", "lives"]}},
    },
    "patterns": {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                       "when": {"type": "string", "format": "date"},
                       "word": {"type": "string", "pattern": "ab+"}},
        "required": ["code", "when", "word"],
    },
    "numbers": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 4},
    "tree": {
        "$ref": "#/$defs/node",
        "$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"},
                                                            "children": {"type": "array", "items": {"$ref": "#/$defs/node"},
                                                                         "maxItems": 2}},
                           "required": ["value"]}},
    },
    "literals": {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", 3, None]}, "flag": {"type": "boolean"},
                       "fixed": {"const": {"a": [1, 2], "b": "x"}}, "nothing": {"type": "null"}},
        "required": ["color", "flag", "fixed", "nothing"],
    },
    "union": {"type": ["string", "integer"]},
    "dictionary": {"type": "object", "additionalProperties": {"type": "integer"}},
    "anything": {},
}

SAMPLING = {"greedy": {"temperature": 0}, "sampled": {"temperature": 1.0, "top_p": 1.0, "seed": 7}}


def validate(text, schema):
    value = json.loads(text)
    jsonschema.validate(value, schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return value


@pytest.fixture
def client(daemon):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{daemon.port}/v1", api_key="unused", timeout=PATIENCE, max_retries=0)


def response_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


@pytest.mark.parametrize("sampling", SAMPLING)
@pytest.mark.parametrize("name", SCHEMAS)
def test_chat_output_validates_against_its_schema(client, name, sampling):
    schema = SCHEMAS[name]
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=120,
                                           response_format=response_format(schema), **SAMPLING[sampling])
    choice = reply.choices[0]
    validate(choice.message.content, schema)
    assert choice.finish_reason in ("stop", "length")


@pytest.mark.parametrize("name", ["person", "tree", "dictionary"])
def test_streamed_output_validates_and_equals_the_whole_reply(client, name):
    schema = SCHEMAS[name]
    ask = dict(model="tiny", messages=MESSAGES, max_tokens=120, response_format=response_format(schema), temperature=0)
    whole = client.chat.completions.create(**ask).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **ask))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == whole
    validate(text, schema)


@pytest.mark.parametrize("budget", [20, 21, 24, 30, 45])
def test_a_small_max_tokens_still_closes_the_json(client, budget):
    # The person schema's shortest output, {"name":"x","age":0,"pet":null}, is 31 bytes; the engine allows a token
    # only while what is left can still be closed, so the JSON is whole even when the budget is tight.
    schema = SCHEMAS["person"]
    ask = dict(model="tiny", messages=MESSAGES, max_tokens=budget, response_format=response_format(schema),
               temperature=1.0, seed=budget)
    if budget < 31:
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(**ask)
        assert "max_tokens" in str(error.value) and "31" in str(error.value)
        return
    reply = client.chat.completions.create(**ask)
    validate(reply.choices[0].message.content, schema)
    assert reply.usage.completion_tokens <= budget


def test_json_object_mode_and_completions(client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=60, temperature=1.0, seed=3,
                                           response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content), dict)
    schema = SCHEMAS["literals"]
    completion = client.completions.create(model="tiny", prompt="JSON:", max_tokens=80, temperature=0,
                                           extra_body={"response_format": response_format(schema)})
    validate(completion.choices[0].text, schema)


@pytest.mark.parametrize("schema, named", [
    ({"type": "integer", "minimum": 0}, '"minimum"'),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, '"oneOf"'),
    ({"type": "string", "format": "email"}, 'format "email"'),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"$ref": "https://example.com/schema.json"}, "outside the document"),
    ({"type": "string", "pattern": "^(?!a)"}, "pattern group (?!"),
])
def test_unsupported_schema_features_are_a_400_naming_them(client, schema, named):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=20, response_format=response_format(schema))
    assert named in str(error.value)


def test_structured_generate_on_the_builtin_engine(daemon):
    schema = SCHEMAS["person"]
    status, _, body = call(daemon.port, "POST", "/api/v1/llm/structured-generate",
                           {"model": "tiny", "prompt": "Describe a person.", "schema": schema, "max_tokens": 80})
    assert status == 200, body
    data = json.loads(body)["data"]
    assert data["json"] == validate(data["text"], schema)


WEATHER = {"type": "function", "function": {
    "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8},
                                                                        "days": {"type": "integer"}},
                                      "required": ["city", "days"]}}}
TIME = {"type": "function", "function": {"name": "time", "parameters": {"type": "object", "properties": {}}}}

# Test templates that render tools in a few tokens (the tiny model's context is 512 tokens of a 603-token
# vocabulary, too small for its own template's tool preamble): one asks for Qwen/Hermes <tool_call> tags, the other,
# without them, for Llama 3's JSON form.
TEMPLATES = {
    "hermes": "{%- if tools %}<|im_start|>system\n{% for tool in tools %}{{ tool.function.name }} {% endfor %}"
              "<tool_call><|im_end|>\n{% endif %}"
              "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
              "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "llama": "{%- if tools %}<|im_start|>system\n{% for tool in tools %}{{ tool.function.name }} {% endfor %}"
             "JSON<|im_end|>\n{% endif %}"
             "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
             "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
}


@pytest.fixture(scope="module")
def tool_runs(daemons, workdir):
    """Runs `hermes` and `llama` of the tiny model with the test templates, in the session's daemon."""
    daemon = daemons.get()
    for name, template in TEMPLATES.items():
        directory = workdir / f"tools-{name}"
        shutil.copytree(TINY_MODEL, directory)
        config = json.loads((directory / "tokenizer_config.json").read_text())
        config["chat_template"] = template
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
        status, _, body = call(daemon.port, "POST", "/api/v1/models/adopt",
                               {"path": str(directory), "kind": "dir", "name": f"acme/tools-{name}"})
        assert status == 200, body
        status, _, body = call(daemon.port, "POST", "/api/v1/models/start",
                               {"model": f"acme/tools-{name}", "engine": "builtin", "name": name})
        assert status == 200, body
    deadline = time.monotonic() + PATIENCE
    for name in TEMPLATES:
        while True:
            status, _, body = call(daemon.port, "GET", f"/api/v1/models/running/{name}")
            if status == 200 and json.loads(body)["data"]["state"] == "ready":
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
    yield daemon
    for name in TEMPLATES:
        status, _, body = call(daemon.port, "POST", f"/api/v1/models/running/{name}/stop")
        assert status == 200, body


@pytest.fixture
def tools_client(tool_runs):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{tool_runs.port}/v1", api_key="unused", timeout=PATIENCE, max_retries=0)


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "weather"}}])
def test_tool_calls_in_replies(tools_client, template, choice):
    # A forced tool choice constrains the reply to one call in the template's format (Hermes tags, or Llama 3's
    # JSON), which the engine then parses out of the text as it would any model's.
    reply = tools_client.chat.completions.create(model=template, messages=MESSAGES, tools=[WEATHER, TIME],
                                                 tool_choice=choice, max_tokens=120, temperature=0)
    result = reply.choices[0]
    assert result.finish_reason == "tool_calls"
    assert result.message.content is None
    [call_] = result.message.tool_calls
    assert call_.type == "function" and call_.id.startswith("call_")
    if isinstance(choice, dict):
        assert call_.function.name == "weather"
    parameters = {tool["function"]["name"]: tool["function"]["parameters"] for tool in (WEATHER, TIME)}
    jsonschema.validate(json.loads(call_.function.arguments), parameters[call_.function.name])


@pytest.mark.parametrize("template", TEMPLATES)
def test_tool_calls_in_streamed_deltas(tools_client, template):
    ask = dict(model=template, messages=MESSAGES, tools=[WEATHER], tool_choice="required", max_tokens=120,
               temperature=1.0, seed=5)
    whole = tools_client.chat.completions.create(**ask).choices[0]
    chunks = [chunk for chunk in tools_client.chat.completions.create(stream=True, **ask) if chunk.choices]
    calls = [call_ for chunk in chunks for call_ in (chunk.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].id.startswith("call_")
    assert calls[0].function.name == "weather" == whole.message.tool_calls[0].function.name
    assert calls[0].function.arguments == whole.message.tool_calls[0].function.arguments
    jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER["function"]["parameters"])
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == ""
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_auto_tool_choice_without_a_call_is_plain_content(tools_client):
    reply = tools_client.chat.completions.create(model="hermes", messages=MESSAGES, tools=[WEATHER], max_tokens=8,
                                                 temperature=0, extra_body={"ignore_eos": True})
    result = reply.choices[0]
    assert result.message.tool_calls is None and result.finish_reason == "length"
    assert isinstance(result.message.content, str)
