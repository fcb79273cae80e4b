"""Integration tests: boto3's `bedrock-runtime` client, unchanged, against a real `highside
serve`, signing with a Highside-issued access key pair (AWS Signature Version 4)."""

import json
import urllib.request

import boto3
import botocore.config
import botocore.exceptions
import pytest

MODEL_ID = "smollm2"  # the name conftest.py imports the model under
HELLO = [{"role": "user", "content": [{"text": "Say hello."}]}]


def _post(url: str, key: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {key}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.load(res)


def _bedrock(url: str, access_key: str, secret: str):
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        # Observe the server's real answers, never SDK retries.
        config=botocore.config.Config(retries={"total_max_attempts": 1}, read_timeout=120),
    )


@pytest.fixture(scope="module")
def pair(server):
    """An access key pair the test user issues for themselves with their bearer key."""
    url, key, _ = server
    made = _post(url, key, "/admin/v1/keys", {"name": "boto3", "kind": "aws"})
    assert made["kind"] == "aws" and made["access_key_id"] == made["prefix"], made
    assert "key" not in made
    return made


@pytest.fixture(scope="module")
def bedrock(server, pair):
    url, _, _ = server
    return _bedrock(url, pair["access_key_id"], pair["secret_access_key"])


def _audit(server, request_id: str) -> list:
    url, _, operator_key = server
    req = urllib.request.Request(f"{url}/admin/v1/audit?request_id={request_id}",
                                 headers={"Authorization": f"Bearer {operator_key}"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return [e["record"] for e in json.load(res)["data"]]


def _code(info) -> str:
    return info.value.response["Error"]["Code"]


def test_converse(bedrock):
    r = bedrock.converse(modelId=MODEL_ID, messages=HELLO,
                         inferenceConfig={"maxTokens": 12, "temperature": 0})
    text = r["output"]["message"]["content"][0]["text"]
    assert r["output"]["message"]["role"] == "assistant"
    assert isinstance(text, str) and text.strip()
    assert r["stopReason"] in ("end_turn", "max_tokens")
    usage = r["usage"]
    assert usage["inputTokens"] > 0 and 1 <= usage["outputTokens"] <= 12
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    headers = r["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-highside-label"] == "UNCLASSIFIED"  # the request's high-water mark
    assert r["ResponseMetadata"]["RequestId"].startswith("chatcmpl-")


def test_converse_stream_matches_converse(server, bedrock):
    args = dict(modelId=MODEL_ID, system=[{"text": "You are terse."}],
                messages=[{"role": "user", "content": [{"text": "Tell me about lighthouses."}]}],
                inferenceConfig={"maxTokens": 20, "temperature": 0})
    ref = bedrock.converse(**args)
    streamed = bedrock.converse_stream(**args)
    events = list(streamed["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and events[0]["messageStart"]["role"] == "assistant"
    assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"], kinds
    assert set(kinds[1:-3]) == {"contentBlockDelta"}, kinds
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events
                   if "contentBlockDelta" in e)
    assert text == ref["output"]["message"]["content"][0]["text"]
    assert events[-2]["messageStop"]["stopReason"] == ref["stopReason"]
    assert events[-1]["metadata"]["usage"] == ref["usage"]
    # The same records as any chat completion: a decision and, durable before messageStop,
    # the completion with the tokens the metadata reported.
    records = _audit(server, streamed["ResponseMetadata"]["RequestId"])
    assert sorted(r["type"] for r in records) == ["completion", "decision"], records
    decision = next(r for r in records if r["type"] == "decision")
    assert decision["route"] == "POST /model/{modelId}/converse-stream"
    completion = next(r for r in records if r["type"] == "completion")
    assert completion["completion_tokens"] == ref["usage"]["outputTokens"]


def test_invoke_model_native_bodies(bedrock):
    llama = bedrock.invoke_model(modelId=MODEL_ID, contentType="application/json",
                                 body=json.dumps({"prompt": "The capital of France is",
                                                  "max_gen_len": 5, "temperature": 0}))
    out = json.loads(llama["body"].read())
    assert isinstance(out["generation"], str) and out["generation"]
    assert out["prompt_token_count"] > 0 and 1 <= out["generation_token_count"] <= 5
    chat = bedrock.invoke_model(modelId=MODEL_ID, body=json.dumps({
        "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}))
    out = json.loads(chat["body"].read())
    assert out["object"] == "chat.completion" and out["choices"][0]["message"]["content"]


def _chunks(response) -> list:
    out = []
    for event in response["body"]:
        assert set(event) == {"chunk"}, event
        out.append(json.loads(event["chunk"]["bytes"]))
    return out


def test_invoke_model_with_response_stream(server, bedrock):
    body = {"prompt": "The capital of France is", "max_gen_len": 6, "temperature": 0}
    whole = json.loads(bedrock.invoke_model(modelId=MODEL_ID, body=json.dumps(body))["body"].read())
    res = bedrock.invoke_model_with_response_stream(modelId=MODEL_ID, body=json.dumps(body))
    pieces = _chunks(res)
    assert "".join(p["generation"] for p in pieces) == whole["generation"]
    last = pieces[-1]
    metrics = last["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] == whole["generation_token_count"]
    assert last["stop_reason"] == whole["stop_reason"]
    # Audited and metered like every other route.
    request_id = res["ResponseMetadata"]["HTTPHeaders"]["x-request-id"]
    records = _audit(server, request_id)
    assert sorted(r["type"] for r in records) == ["completion", "decision"], records
    completion = next(r for r in records if r["type"] == "completion")
    assert completion["completion_tokens"] == metrics["outputTokenCount"]
    # The OpenAI chat body streams chat completion chunks, usage last.
    chat = bedrock.invoke_model_with_response_stream(modelId=MODEL_ID, body=json.dumps({
        "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4,
        "temperature": 0}))
    chunks = _chunks(chat)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text and chunks[-1]["usage"]["completion_tokens"] >= 1
    # A bad body is the same ValidationException as on invoke.
    with pytest.raises(botocore.exceptions.ClientError) as info:
        bedrock.invoke_model_with_response_stream(modelId=MODEL_ID, body=b"not json")
    assert _code(info) == "ValidationException"


def test_a_bad_signature_is_refused_the_aws_way(server, pair):
    url, _, _ = server
    forged = _bedrock(url, pair["access_key_id"], pair["secret_access_key"][::-1])
    with pytest.raises(botocore.exceptions.ClientError) as info:
        forged.converse(modelId=MODEL_ID, messages=HELLO)
    assert _code(info) == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # Recorded like any authentication failure, naming the route and never the credential.
    request_id = info.value.response["ResponseMetadata"]["HTTPHeaders"]["x-request-id"]
    [record] = _audit(server, request_id)
    assert record["type"] == "auth_failure"
    assert record["route"] == f"POST /model/{MODEL_ID}/converse"
    assert pair["secret_access_key"][::-1] not in json.dumps(record)
    unknown = _bedrock(url, "hs_0000000000000000", pair["secret_access_key"])
    with pytest.raises(botocore.exceptions.ClientError) as info:
        unknown.converse(modelId=MODEL_ID, messages=HELLO)
    assert _code(info) == "InvalidSignatureException"


def test_errors_are_bedrock_exceptions(bedrock):
    with pytest.raises(botocore.exceptions.ClientError) as info:
        bedrock.converse(modelId="no-such-model", messages=HELLO)
    assert _code(info) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        bedrock.converse(modelId=MODEL_ID, messages=[
            {"role": "user", "content": [{"text": "TOP SECRET//SI\nSummarise the annex."}]}])
    assert _code(info) == "AccessDeniedException"
    assert "mac.no_read_up.level" in info.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as info:
        bedrock.converse(modelId=MODEL_ID, messages=HELLO,
                         inferenceConfig={"temperature": 7.0})
    assert _code(info) == "ValidationException"


def test_a_revoked_pair_stops_at_once(server):
    url, key, _ = server
    made = _post(url, key, "/admin/v1/keys", {"name": "short-lived", "kind": "aws"})
    client = _bedrock(url, made["access_key_id"], made["secret_access_key"])
    client.converse(modelId=MODEL_ID, messages=HELLO, inferenceConfig={"maxTokens": 2})
    req = urllib.request.Request(f"{url}/admin/v1/keys/{made['id']}", method="DELETE",
                                 headers={"Authorization": f"Bearer {key}"})
    urllib.request.urlopen(req, timeout=30).close()
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.converse(modelId=MODEL_ID, messages=HELLO, inferenceConfig={"maxTokens": 2})
    assert _code(info) == "UnrecognizedClientException"


WEATHER = {"tools": [{"toolSpec": {
    "name": "get_weather", "description": "Current weather for a city",
    "inputSchema": {"json": {"type": "object", "required": ["city"],
                             "properties": {"city": {"type": "string"}}}}}}],
    "toolChoice": {"tool": {"name": "get_weather"}}}


def test_converse_tool_use_round_trip(bedrock):
    question = {"role": "user", "content": [{"text": "What is the weather in Oslo?"}]}
    r = bedrock.converse(modelId=MODEL_ID, messages=[question], toolConfig=WEATHER,
                         inferenceConfig={"maxTokens": 64, "temperature": 0})
    assert r["stopReason"] == "tool_use"
    [use] = [b["toolUse"] for b in r["output"]["message"]["content"] if "toolUse" in b]
    assert use["name"] == "get_weather" and isinstance(use["input"]["city"], str)
    follow = [question, r["output"]["message"], {"role": "user", "content": [
        {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"json": {"temp_c": 3}}]}}]}]
    r2 = bedrock.converse(modelId=MODEL_ID, messages=follow,
                          toolConfig={"tools": WEATHER["tools"]},
                          inferenceConfig={"maxTokens": 8, "temperature": 0})
    assert r2["stopReason"] in ("end_turn", "max_tokens", "tool_use")


def test_converse_stream_tool_use(bedrock):
    events = list(bedrock.converse_stream(
        modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Weather in Rome?"}]}],
        toolConfig=WEATHER, inferenceConfig={"maxTokens": 64, "temperature": 0})["stream"])
    starts = [e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e]
    assert [s["name"] for s in starts] == ["get_weather"]
    inputs = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                     if "contentBlockDelta" in e and "toolUse" in e["contentBlockDelta"]["delta"])
    assert isinstance(json.loads(inputs)["city"], str)
    assert next(e for e in events if "messageStop" in e)["messageStop"]["stopReason"] == "tool_use"
