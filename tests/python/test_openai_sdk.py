"""Integration tests: the official `openai` Python SDK against a real `highside serve`."""

import hashlib
import json
import urllib.request
import uuid

import openai
import pytest

MODEL_ID = "smollm2"  # the name conftest.py imports the model under

HELLO = [{"role": "user", "content": "Say hello."}]
STORY = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def _error_body(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    assert isinstance(err.get("type"), str) and err["type"], err
    assert isinstance(err.get("message"), str) and err["message"], err
    return err


def test_models_list(client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert MODEL_ID in ids, ids
    model = next(m for m in models.data if m.id == MODEL_ID)
    assert model.object == "model"
    assert isinstance(model.owned_by, str) and model.owned_by


def test_chat_non_streaming(client):
    resp = client.chat.completions.create(
        model=MODEL_ID, messages=HELLO, max_tokens=16, temperature=0
    )
    assert resp.object == "chat.completion"
    assert resp.model == MODEL_ID
    assert resp.id
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = resp.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert 1 <= usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if choice.finish_reason == "length":
        assert usage.completion_tokens == 16


def test_chat_streaming_matches_non_streaming(client):
    ref = client.chat.completions.create(
        model=MODEL_ID, messages=STORY, max_tokens=24, temperature=0
    )
    ref_text = ref.choices[0].message.content
    assert ref_text

    stream = client.chat.completions.create(
        model=MODEL_ID, messages=STORY, max_tokens=24, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len(chunks) >= 2, chunks

    # With include_usage the last chunk carries usage and no choices; all others usage=None.
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    for c in chunks[:-1]:
        assert c.usage is None, c

    choice_chunks = [c for c in chunks if c.choices]
    assert choice_chunks
    ids = {c.id for c in chunks}
    assert len(ids) == 1, ids
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        assert c.model == MODEL_ID

    text = ""
    roles = []
    finishes = []
    for c in choice_chunks:
        assert len(c.choices) == 1
        ch = c.choices[0]
        assert ch.index == 0
        if ch.delta.role is not None:
            roles.append(ch.delta.role)
        if ch.delta.content:
            text += ch.delta.content
        if ch.finish_reason is not None:
            finishes.append(ch.finish_reason)

    assert roles and set(roles) == {"assistant"}, roles
    assert len(finishes) == 1, finishes
    assert finishes[0] == ref.choices[0].finish_reason
    assert text == ref_text  # greedy decoding is deterministic

    assert last.usage.completion_tokens == ref.usage.completion_tokens
    assert last.usage.prompt_tokens == ref.usage.prompt_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model="no-such-model", messages=HELLO, max_tokens=4, temperature=0
        )
    assert info.value.status_code == 404
    _error_body(info.value)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"temperature": 5}, id="temperature=5"),
        pytest.param({"max_tokens": -1}, id="max_tokens=-1"),
        pytest.param({"messages": []}, id="messages=[]"),
    ],
)
def test_bad_parameters_are_400(client, overrides):
    kwargs = dict(model=MODEL_ID, messages=HELLO, max_tokens=8, temperature=0)
    kwargs.update(overrides)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**kwargs)
    assert info.value.status_code == 400
    _error_body(info.value)


def test_legacy_completions(client):
    resp = client.completions.create(
        model=MODEL_ID, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert resp.object == "text_completion"
    assert resp.model == MODEL_ID
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.index == 0
    assert isinstance(choice.text, str) and choice.text.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = resp.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert 1 <= usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_server_still_serves_after_errors(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL_ID, messages=[], max_tokens=4)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=HELLO, max_tokens=4)
    resp = client.chat.completions.create(
        model=MODEL_ID, messages=HELLO, max_tokens=8, temperature=0
    )
    assert resp.choices[0].message.content
    assert 1 <= resp.usage.completion_tokens <= 8


def test_bad_key_is_an_authentication_error(server):
    url, _, _ = server
    stranger = openai.OpenAI(
        base_url=f"{url}/v1", api_key="hs_" + "0" * 16 + "_" + "0" * 64, max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()
    with pytest.raises(openai.AuthenticationError):
        stranger.chat.completions.create(model=MODEL_ID, messages=HELLO, max_tokens=4)


def test_output_label_header_and_body(client):
    # The model is accredited SECRET//NOFORN and the key's user holds SECRET (see conftest.py).
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL_ID, messages=HELLO, max_tokens=4, temperature=0,
        extra_headers={"X-Highside-Label": "CONFIDENTIAL"},
        extra_body={"highside": {"label": "(S//NF)"}},
    )
    assert raw.headers.get("x-highside-label") == "SECRET//NOFORN"
    resp = raw.parse()
    assert resp.model_extra["highside"]["label"] == "SECRET//NOFORN"
    assert resp.choices[0].message.content


def test_streaming_chunks_carry_the_label(client):
    stream = client.chat.completions.create(
        model=MODEL_ID, max_tokens=4, temperature=0, stream=True,
        messages=[{"role": "user", "content": "(C) Say hello."}],
    )
    labels = {chunk.model_extra["highside"]["label"] for chunk in stream}
    assert labels == {"CONFIDENTIAL"}


def test_reading_up_is_permission_denied(client):
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(
            model=MODEL_ID, max_tokens=4,
            messages=[{"role": "user", "content": "TOP SECRET//SI\nSummarise the annex."}],
        )
    err = _error_body(info.value)
    assert err["code"] == "access_denied"
    assert "mac.no_read_up.level" in err["message"]
    assert "annex" not in err["message"]


def test_an_invalid_declared_label_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL_ID, messages=HELLO, max_tokens=4,
            extra_body={"highside": {"label": "SECRET//NOSUCHCOMPARTMENT"}},
        )
    err = _error_body(info.value)
    assert err["param"] == "highside.label"


def _audit(server, **query) -> list:
    url, _, operator_key = server
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    req = urllib.request.Request(f"{url}/admin/v1/audit?{qs}",
                                 headers={"Authorization": f"Bearer {operator_key}"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return [e["record"] for e in json.load(res)["data"]]


def test_every_answer_is_in_the_audit_log(server, client):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL_ID, messages=HELLO, max_tokens=6, temperature=0
    )
    request_id = raw.headers["x-request-id"]
    content = raw.parse().choices[0].message.content
    records = _audit(server, request_id=request_id)
    kinds = sorted(r["type"] for r in records)
    assert kinds == ["completion", "decision"], records
    decision = next(r for r in records if r["type"] == "decision")
    assert decision["decision"] == "allow" and decision["model_label"] == "SECRET//NOFORN"
    completion = next(r for r in records if r["type"] == "completion")
    assert completion["output_sha256"] == hashlib.sha256(content.encode()).hexdigest()

    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(
            model=MODEL_ID, max_tokens=4,
            messages=[{"role": "user", "content": "TOP SECRET\nSummarise."}],
        )
    denied_id = info.value.response.headers["x-request-id"]
    [record] = _audit(server, request_id=denied_id)
    assert record["decision"] == "deny"
    assert record["reasons"][0].startswith("mac.no_read_up.level")


def _admin(server, method: str, path: str, body=None):
    url, _, operator_key = server
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {operator_key}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.load(res)


def test_rate_limits_are_openai_rate_limit_errors(server):
    url, key, _ = server
    me = json.load(urllib.request.urlopen(urllib.request.Request(
        f"{url}/admin/v1/whoami", headers={"Authorization": f"Bearer {key}"}), timeout=30))
    # A key of its own (made by the operator) with one request a minute.
    made = _admin(server, "POST", "/admin/v1/keys", {"user_id": me["user_id"], "name": "rl"})
    _admin(server, "PUT", f"/admin/v1/limits/key/{made['id']}", {"requests_per_minute": 1})
    limited = openai.OpenAI(base_url=f"{url}/v1", api_key=made["key"], max_retries=0)
    raw = limited.completions.with_raw_response.create(
        model=MODEL_ID, prompt="Hello", max_tokens=2, temperature=0)
    assert raw.headers["x-ratelimit-limit-requests"] == "1"
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as info:
        limited.completions.create(model=MODEL_ID, prompt="Hello", max_tokens=2)
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert _error_body(info.value)["code"] == "rate_limit_exceeded"


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "required": ["city", "unit"], "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}}}


def test_a_forced_tool_call_and_its_result(client):
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(
        model=MODEL_ID, messages=question, tools=[WEATHER_TOOL], max_tokens=64, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"} and args["unit"] in ("celsius", "fahrenheit")
    assert isinstance(args["city"], str)
    # The call and its result go back in; the model answers (with or without another call).
    follow = question + [choice.message.model_dump(exclude_none=True),
                         {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 12}'}]
    r2 = client.chat.completions.create(model=MODEL_ID, messages=follow, tools=[WEATHER_TOOL],
                                        max_tokens=16, temperature=0)
    assert r2.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_a_required_tool_call_streams_as_one_delta(client):
    deltas, finish = [], None
    for chunk in client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[WEATHER_TOOL], tool_choice="required", max_tokens=64, temperature=0,
            stream=True):
        for c in chunk.choices:
            deltas.extend(c.delta.tool_calls or [])
            finish = c.finish_reason or finish
    assert finish == "tool_calls"
    assert [d.function.name for d in deltas] == ["get_weather"]
    assert json.loads(deltas[0].function.arguments)["unit"] in ("celsius", "fahrenheit")


@pytest.mark.parametrize("tools,choice", [
    ([{"type": "function", "function": {"name": "bad name"}}], None),
    ([WEATHER_TOOL], {"type": "function", "function": {"name": "not_offered"}}),
    (None, "required"),
])
def test_bad_tools_are_400(client, tools, choice):
    extra = {}
    if tools is not None:
        extra["tools"] = tools
    if choice is not None:
        extra["tool_choice"] = choice
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL_ID, messages=HELLO, max_tokens=4, **extra)


EMBED_ID = "minilm"


def test_embeddings_through_the_sdk(server, client):
    texts = ["The quick brown fox jumps over the lazy dog.",
             "A fast auburn fox leaped above a sleepy hound.",
             "Quarterly budget figures are due on Friday."]
    # The SDK asks for base64 by default and decodes it.
    raw = client.embeddings.with_raw_response.create(model=EMBED_ID, input=texts)
    r = raw.parse()
    assert [d.index for d in r.data] == [0, 1, 2]
    vecs = [d.embedding for d in r.data]
    assert all(len(v) == 384 for v in vecs)
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))
    assert all(abs(dot(v, v) - 1.0) < 1e-4 for v in vecs)
    assert dot(vecs[0], vecs[1]) > dot(vecs[0], vecs[2]) + 0.3
    assert r.usage.prompt_tokens == r.usage.total_tokens > 20
    floats = client.embeddings.create(model=EMBED_ID, input=texts[0], encoding_format="float")
    assert abs(dot(floats.data[0].embedding, vecs[0]) - 1.0) < 1e-5
    # The same records as chat: a decision and a completion with the input tokens.
    records = _audit(server, request_id=raw.headers["x-request-id"])
    assert sorted(r["type"] for r in records) == ["completion", "decision"], records
    completion = next(x for x in records if x["type"] == "completion")
    assert completion["prompt_tokens"] == r.usage.prompt_tokens
    assert raw.headers["x-highside-label"] == "UNCLASSIFIED"


def test_embedding_errors(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=EMBED_ID, input="word " * 600)
    assert _error_body(info.value)["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=EMBED_ID, input="x", dimensions=128)
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model=EMBED_ID, input="TOP SECRET//SI\nthe annex")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    # An Idempotency-Key holds for embeddings as for chat: the retry is refused, not run again.
    key = {"Idempotency-Key": f"emb-{uuid.uuid4().hex}"}
    client.embeddings.create(model=EMBED_ID, input="once", extra_headers=key)
    with pytest.raises(openai.ConflictError) as info:
        client.embeddings.create(model=EMBED_ID, input="once", extra_headers=key)
    assert _error_body(info.value)["code"] == "idempotency_key_reused"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=EMBED_ID, messages=HELLO, max_tokens=2)
