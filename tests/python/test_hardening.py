"""Black-box regression tests for the security review's findings (issue 15), one case per
finding, each against a real `highside serve` and each asserting the secure behaviour. New
settings reach the servers through environment variables (never highside.toml), so an older
binary starts with its defaults and fails these tests instead of refusing to start."""

import datetime
import json
import socket
import ssl
import tempfile
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import openai
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import (Highside, _binary, _printed_key, _read_port, _run_cli, _tail, demo_model,
                      embedding_model, init_data)
from fake_anthropic import FakeAnthropic

MODEL = "smollm2"
ROUTE = "via-claude"  # the Anthropic stand-in, accredited UNCLASSIFIED
CALL_TIMEOUT = 120


def _json(raw: bytes):
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def call(url, method, path, key=None, body=None, headers=None, timeout=CALL_TIMEOUT,
         context=None):
    """One HTTP request: (status, decoded body, headers)."""
    h = {"Content-Type": "application/json", **(headers or {})}
    if key:
        h["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, _json(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read()), dict(e.headers)


def created(url, key, path, body):
    status, out, _ = call(url, "POST", path, key, body)
    assert status == 201, f"{path} {body}: {status} {out}"
    return out


def chat(content, **extra):
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 1,
            "temperature": 0, **extra}


def audit(url, operator, **query):
    q = "&".join(f"{k}={v}" for k, v in query.items())
    status, out, _ = call(url, "GET", f"/admin/v1/audit?{q}&limit=1000", operator)
    assert status == 200, out
    return [e["record"] for e in out["data"]]


def bare_server(tmp: Path, name: str, env: dict, context=None, scheme="http"):
    """A `highside serve` without models (ready answers 503 no_models): started, and waited
    for on /health/live."""
    binary = _binary()
    data = tmp / name
    operator = _printed_key(_run_cli(binary, "init", "--data", str(data)))
    hs = Highside.__new__(Highside)
    hs.binary, hs.data = binary, data
    hs.log_path = data.parent / f"{name}.log"
    hs.log = open(hs.log_path, "wb")
    import os
    import subprocess
    port_file = data / "port"
    hs.proc = subprocess.Popen(
        [str(binary), "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--port-file",
         str(port_file)],
        stdout=hs.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, **env})
    deadline = time.monotonic() + 120
    while True:
        if hs.proc.poll() is not None:
            pytest.fail(f"{name} exited early\n{_tail(hs.log_path)}")
        port = _read_port(port_file)
        if port is not None:
            host = "localhost" if scheme == "https" else "127.0.0.1"
            hs.url = f"{scheme}://{host}:{port}"
            try:
                with urllib.request.urlopen(f"{hs.url}/health/live", timeout=2,
                                            context=context) as r:
                    if r.status == 200:
                        return hs, operator
            except OSError:
                pass
        if time.monotonic() > deadline:
            hs.kill()
            pytest.fail(f"{name} not live\n{_tail(hs.log_path)}")
        time.sleep(0.1)


class World:
    pass


@pytest.fixture(scope="module")
def w():
    tmp = Path(tempfile.mkdtemp(prefix="highside-hardening-"))
    w = World()
    w.tmp = tmp
    started = []
    try:
        data, op = init_data(tmp, "h", demo_model(), label="SECRET//NOFORN")
        _run_cli(_binary(), "models", "import", str(embedding_model()), "--name", "minilm",
                 "--data", str(data), "--label", "SECRET//NOFORN")
        w.anthropic = FakeAnthropic(api_key="sk-ant-hardening")
        (data / "anthropic.key").write_text("sk-ant-hardening\n")
        with open(data / "highside.toml", "a") as f:
            f.write(f'\n[[deployments]]\nname = "claude"\nprotocol = "anthropic"\n'
                    f'url = "{w.anthropic.url}"\nmodel = "claude-fake"\nlabel = "UNCLASSIFIED"\n'
                    f'api_key_file = "anthropic.key"\nconnect_timeout_secs = 2\n'
                    f'[[routes]]\nmodel = "{ROUTE}"\ndeployments = [{{ name = "claude" }}]\n')
        # Debug logs of the providers: an upstream's error body must not reach them either.
        w.h = Highside(data, env={"HIGHSIDE_LOG": "info,highside_providers=debug"})
        started.append(w.h)
        w.url, w.op = w.h.url, op

        def agency(name):
            return created(w.url, op, "/admin/v1/agencies",
                           {"name": name, "branch": "executive"})["id"]

        def user(agency_id, name, clearance, nationality="USA", roles=("user",)):
            u = created(w.url, op, "/admin/v1/users",
                        {"agency_id": agency_id, "name": name, "clearance": clearance,
                         "nationality": nationality, "roles": list(roles)})
            k = created(w.url, op, "/admin/v1/keys", {"user_id": u["id"], "name": "k"})
            return u, k["key"]

        w.agency_usa = agency("Analysis")
        w.agency_uk = agency("UK liaison")
        w.s_user, w.s_key = user(w.agency_usa, "sam", "SECRET")
        w.u_user, w.u_key = user(w.agency_usa, "una", "UNCLASSIFIED")
        w.aus_user, w.aus_key = user(w.agency_usa, "bruce", "SECRET", nationality="AUS")
        w.uk_admin, w.uk_admin_key = user(w.agency_uk, "uk-admin", "SECRET",
                                          nationality="GBR", roles=("agency-admin", "user"))
        w.auditor, w.auditor_key = user(w.agency_usa, "audrey", "SECRET", roles=("auditor",))
        yield w
        w.h.stop()
    finally:
        for h in started:
            h.kill()
        if getattr(w, "anthropic", None) is not None:
            w.anthropic.close()
        shutil.rmtree(tmp, ignore_errors=True)


def denied(status, body, rule=None):
    assert status == 403, body
    assert body["error"]["code"] == "access_denied", body
    if rule:
        assert rule in body["error"]["message"], body


# 1 -------------------------------------------------------------------------------------


def test_01_nationality_is_granted_only_by_who_can_vouch_for_it(w):
    status, out, _ = call(w.url, "PATCH", f"/admin/v1/agencies/{w.agency_uk}", w.op,
                          {"nationality": "GBR"})
    assert status == 200 and out["nationality"] == "GBR", out
    # A GBR agency's administrator can make neither a USA national nor themselves one.
    status, out, _ = call(w.url, "POST", "/admin/v1/users", w.uk_admin_key,
                          {"name": "fake-yank", "clearance": "SECRET", "nationality": "USA"})
    assert status == 403, out
    mate = created(w.url, w.uk_admin_key, "/admin/v1/users",
                   {"name": "mate", "clearance": "SECRET", "nationality": "GBR"})
    for target in (w.uk_admin["id"], mate["id"]):
        status, out, _ = call(w.url, "PATCH", f"/admin/v1/users/{target}", w.uk_admin_key,
                              {"nationality": "USA"})
        assert status == 403, out
    # So NOFORN stays out of reach.
    status, body, _ = call(w.url, "POST", "/v1/chat/completions", w.uk_admin_key,
                           chat("SECRET//NOFORN\nThe plan."))
    denied(status, body, "mac.releasability")
    # An operator vouches, and the change is audited with before and after.
    status, out, _ = call(w.url, "PATCH", f"/admin/v1/users/{mate['id']}", w.op,
                          {"nationality": "USA"})
    assert status == 200 and out["nationality"] == "USA", out
    changes = [r for r in audit(w.url, w.op, type="admin")
               if r["action"] == "user.update" and r["target"] == mate["id"]
               and not r.get("denied")]
    assert changes and changes[-1]["before"]["nationality"] == "GBR", changes
    assert changes[-1]["after"]["nationality"] == "USA", changes


# 2 -------------------------------------------------------------------------------------


def _bedrock(w, key):
    pair = created(w.url, key, "/admin/v1/keys", {"name": "aws", "kind": "aws"})
    return pair, boto3.client(
        "bedrock-runtime", endpoint_url=w.url, region_name="us-east-1",
        aws_access_key_id=pair["access_key_id"],
        aws_secret_access_key=pair["secret_access_key"],
        config=botocore.config.Config(retries={"total_max_attempts": 1}, read_timeout=120))


def test_02_every_client_string_passes_the_monitor(w):
    ts = "TOP SECRET//SI"
    # Stop strings, to the embedded model and to an external deployment.
    for model in (MODEL, ROUTE):
        status, body, _ = call(w.url, "POST", "/v1/chat/completions", w.s_key,
                               {**chat("Say hi."), "model": model, "stop": [ts]})
        denied(status, body, "mac.no_read_up")
    # Embedding inputs.
    status, body, _ = call(w.url, "POST", "/v1/embeddings", w.s_key,
                           {"model": "minilm", "input": ["fine", f"{ts}\nthe plan"]})
    denied(status, body)
    # Bedrock: a system prompt, an invoke body's prompt, stop sequences.
    _, bedrock = _bedrock(w, w.s_key)
    hello = [{"role": "user", "content": [{"text": "Say hi."}]}]
    for args in ({"system": [{"text": f"{ts}\nBe brief."}]},
                 {"inferenceConfig": {"stopSequences": [ts], "maxTokens": 1}}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            bedrock.converse(modelId=MODEL, messages=hello, **args)
        assert e.value.response["Error"]["Code"] == "AccessDeniedException", e.value.response
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bedrock.invoke_model(modelId=MODEL, body=json.dumps(
            {"prompt": f"{ts}\nContinue:", "max_gen_len": 1}))
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    # The audited prompt digest covers the stop strings: two requests that differ only there
    # have different digests.
    ids = []
    for stop in (["zzz"], ["yyy"]):
        status, out, headers = call(w.url, "POST", "/v1/chat/completions", w.s_key,
                                    {**chat("Say hi."), "stop": stop})
        assert status == 200, out
        ids.append(headers["x-request-id"])
    digests = [next(r for r in audit(w.url, w.op, request_id=i) if r["type"] == "completion")
               ["prompt_sha256"] for i in ids]
    assert digests[0] != digests[1], digests


# 3 -------------------------------------------------------------------------------------


def test_03_markings_in_json_tool_results_are_read(w):
    doc = json.dumps({"doc": "TOP SECRET\nThe plan for the quarter.", "page": 1})
    messages = [
        {"role": "user", "content": "Look it up."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "lookup", "arguments": "{\"q\": \"plan\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": doc},
    ]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}}}]
    status, body, _ = call(w.url, "POST", "/v1/chat/completions", w.s_key,
                           {"model": MODEL, "messages": messages, "tools": tools,
                            "max_tokens": 1})
    denied(status, body, "mac.no_read_up")
    _, bedrock = _bedrock(w, w.s_key)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bedrock.converse(
            modelId=MODEL,
            messages=[
                {"role": "user", "content": [{"text": "Look it up."}]},
                {"role": "assistant", "content": [{"toolUse": {
                    "toolUseId": "t1", "name": "lookup", "input": {"q": "plan"}}}]},
                {"role": "user", "content": [{"toolResult": {
                    "toolUseId": "t1",
                    "content": [{"json": {"doc": "TOP SECRET\nThe plan.", "page": 1}}]}}]},
            ],
            toolConfig={"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {
                "json": {"type": "object", "properties": {"q": {"type": "string"}}}}}}]},
            inferenceConfig={"maxTokens": 1})
    assert e.value.response["Error"]["Code"] == "AccessDeniedException", e.value.response


# 4 -------------------------------------------------------------------------------------


def test_04_an_unknown_word_in_a_banner_denies_and_drops_nothing(w):
    for text, word in (("SECRET//RSEN/NOFORN\nSummarise the plan.", "RSEN"),
                       ("(S//FAKE/NF) Summarise the plan.", "FAKE")):
        status, body, _ = call(w.url, "POST", "/v1/chat/completions", w.s_key, chat(text))
        denied(status, body, "label.unknown_marking")
        assert word in body["error"]["message"], body
    # Nothing hides what follows a marking's level: an invisible character after `//`, a space
    # where a slash belongs. An AUS national may not read either.
    for text in ("SECRET//\u2800NOFORN\nThe plan.", "SECRET//REL TO USA, AUS NOFORN\nThe plan.",
                 "SECRET//\ue000NOFORN The plan."):
        status, body, _ = call(w.url, "POST", "/v1/chat/completions", w.aus_key, chat(text))
        denied(status, body, "mac.releasability")


# 5 -------------------------------------------------------------------------------------


def test_05_obfuscated_markings_are_read_as_written_to_look(w):
    hidden = [
        "T\u200bOP SECRET//SI\nThe plan.",              # zero-width space
        "TOP SE\u00adCRET\nThe plan.",                  # soft hyphen, on a line of its own
        "\uff34\uff2f\uff30 \uff33\uff25\uff23\uff32\uff25\uff34\nThe plan.",  # fullwidth
        "TOPSECRET\nThe plan.",                         # glued
        "TOP-SECRET//SI The plan.",                     # hyphenated
        "\u0422\u041eP SECRET//SI The plan.",           # Cyrillic T and O
        "T\u2060O\u200dP S\u200cECRET\nThe plan.",      # word joiner, ZWJ, ZWNJ
    ]
    for text in hidden:
        status, body, _ = call(w.url, "POST", "/v1/chat/completions", w.s_key, chat(text))
        denied(status, body, "mac.no_read_up.level")
    # REL TO without USA is not unrestricted: an AUS national may not read REL TO USA, GBR.
    status, body, _ = call(w.url, "POST", "/v1/chat/completions", w.aus_key,
                           chat("SECRET//REL TO GBR\nThe plan."))
    denied(status, body, "mac.releasability")


# 6 -------------------------------------------------------------------------------------


def test_06_detection_is_linear_in_the_input(w):
    # Each took the old detector minutes of CPU (120 KB of `S//` took 32 s); a linear one
    # answers at once. The bound is a generous liveness limit, not a measurement: the
    # throughput figure is `highside bench monitor`'s (bench/RESULTS.md).
    for unit, want in (("S//", 403), ("(", 400), ("SECRET ", 400), ("TOP ", 400),
                       ("S//REL TO USA, ", 400), ("TS//SI/", 403)):
        text = unit * (1_000_000 // len(unit))
        started = time.monotonic()
        status, body, _ = call(w.url, "POST", "/v1/chat/completions", w.s_key, chat(text),
                               timeout=60)
        assert status == want, (unit, body)
        assert time.monotonic() - started < 60


# 7 -------------------------------------------------------------------------------------


def _connect(url, source="127.0.0.1"):
    host, port = url.split("//")[1].split(":")
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=30,
                                 source_address=(source, 0))
    return s


def _closed_or_timed_out(s) -> bytes:
    """What the server sends before it closes the connection (b'' if nothing)."""
    out = b""
    while True:
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            pytest.fail(f"the connection is still open after 30 s: {out[:200]!r}")
        if not chunk:
            return out
        out += chunk


def _signed(url, pair, path, body: bytes, extra=None):
    """Headers of a request signed with SigV4 by `pair`, as boto3 signs them."""
    req = AWSRequest(method="POST", url=url + path, data=body,
                     headers={"Content-Type": "application/json", **(extra or {})})
    SigV4Auth(Credentials(pair["access_key_id"], pair["secret_access_key"]), "bedrock",
              "us-east-1").add_auth(req)
    return dict(req.headers.items())


def test_07_listeners_have_header_body_and_idle_timeouts(w):
    t, op = bare_server(w.tmp, "timeouts", {"HIGHSIDE_HEADER_TIMEOUT_SECS": "2",
                                            "HIGHSIDE_BODY_TIMEOUT_SECS": "2",
                                            "HIGHSIDE_CONNECTIONS_PER_ADDRESS": "100",
                                            "HIGHSIDE_AUTH_FAILURES_PER_MINUTE": "1000000"})
    try:
        # Headers that never end: the connection is closed.
        s = _connect(t.url)
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        _closed_or_timed_out(s)
        s.close()
        # An idle keep-alive connection is closed too.
        s = _connect(t.url)
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), first
        _closed_or_timed_out(s)
        s.close()
        # A body that trickles: 408.
        s = _connect(t.url)
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {op}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: 1000\r\n\r\n{{\"model\"").encode())
        answer = _closed_or_timed_out(s)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        s.close()
        # Slow signed bodies from one address (and one access key) cannot take every
        # unverified-body permit: with 70 of them open, a signed client elsewhere, with its own
        # key, is still verified.
        pair = created(t.url, op, "/admin/v1/keys", {"name": "aws", "kind": "aws"})
        other = created(t.url, op, "/admin/v1/keys", {"name": "aws-2", "kind": "aws"})
        body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()
        slow = []
        for _ in range(70):
            headers = _signed(t.url, pair, "/model/none/converse", body)
            s = _connect(t.url)
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            s.sendall((f"POST /model/none/converse HTTP/1.1\r\nHost: {t.url.split('//')[1]}\r\n"
                       f"{head}Content-Length: {len(body)}\r\n\r\n").encode() + body[:5])
            slow.append(s)
        headers = _signed(t.url, other, "/model/none/converse", body)
        s = _connect(t.url, source="127.0.0.2")
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall((f"POST /model/none/converse HTTP/1.1\r\nHost: {t.url.split('//')[1]}\r\n"
                   f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
                  + body)
        answer = _closed_or_timed_out(s)
        status = int(answer.split(b" ")[1])
        assert status not in (503, 401, 403), answer[:300]
        for x in slow:
            x.close()
        s.close()
        # One address holds at most its share of the node's connections: the 101st is closed
        # unanswered, while the ones it holds, and another address, are served.
        held = [_connect(t.url, source="127.0.0.3") for _ in range(100)]
        extra = _connect(t.url, source="127.0.0.3")
        get = b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        try:
            extra.sendall(get)
        except OSError:
            pass  # closed before the request went out: refused all the same
        try:
            refused = _closed_or_timed_out(extra)
        except ConnectionResetError:
            refused = b""  # closed with the request unread
        assert refused == b"", "the connection beyond the share was served"
        held[0].sendall(get)
        assert _closed_or_timed_out(held[0]).startswith(b"HTTP/1.1 200")
        elsewhere = _connect(t.url, source="127.0.0.4")
        elsewhere.sendall(get)
        assert _closed_or_timed_out(elsewhere).startswith(b"HTTP/1.1 200")
        for x in held + [extra, elsewhere]:
            x.close()
    finally:
        t.kill()


# 8 -------------------------------------------------------------------------------------


def test_08_failed_authentication_is_throttled_and_audited_in_aggregate(w):
    a, op = bare_server(w.tmp, "throttle", {"HIGHSIDE_AUTH_FAILURES_PER_MINUTE": "5",
                                            "HIGHSIDE_AUTH_FAILURE_REPORT_SECS": "1"})
    try:
        statuses = [call(a.url, "GET", "/v1/models", f"hs_{i:04}_bogus")[0] for i in range(30)]
        assert statuses.count(401) == 5 and statuses.count(429) == 25, statuses
        # Valid credentials are never throttled.
        assert call(a.url, "GET", "/v1/models", op)[0] == 200
        deadline = time.monotonic() + 30
        while True:
            records = audit(a.url, op, type="auth_failure")
            counted = [r for r in records if r.get("count")]
            if counted or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len([r for r in records if not r.get("count")]) == 5, records
        assert sum(r["count"] for r in counted) == 25, records
        # The audit log's disk is observable.
        status, text, _ = call(a.url, "GET", "/metrics", op)
        assert status == 200 and "highside_audit_disk_free_bytes" in text, text
    finally:
        a.kill()
    # A node whose audit disk is below its floor takes no new work, with a clear error.
    full, op = bare_server(w.tmp, "full-disk", {"HIGHSIDE_AUDIT_MIN_FREE_BYTES":
                                                str(1 << 62)})
    try:
        deadline = time.monotonic() + 30
        while True:
            status, body, _ = call(full.url, "GET", "/v1/models", op)
            if status == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 503 and body["error"]["code"] == "audit_disk_low", body
        assert call(full.url, "GET", "/health/ready")[1]["status"] == "audit_disk_low"
        assert full.proc.poll() is None, "the node keeps running"
    finally:
        full.kill()


# 9 -------------------------------------------------------------------------------------


def _at(minutes: int) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_09_a_key_never_outlives_or_sheds_the_limits_of_its_parent(w):
    parent = created(w.url, w.s_key, "/admin/v1/keys", {"name": "p", "expires_at": _at(60)})
    for expiry in (None, _at(120)):
        body = {"name": "child"} | ({"expires_at": expiry} if expiry else {})
        status, out, _ = call(w.url, "POST", "/admin/v1/keys", parent["key"], body)
        assert status == 403, out
    created(w.url, parent["key"], "/admin/v1/keys", {"name": "ok", "expires_at": _at(30)})
    # A key with limits of its own mints no key that would shed them.
    limited = created(w.url, w.s_key, "/admin/v1/keys", {"name": "limited"})
    status, out, _ = call(w.url, "PUT", f"/admin/v1/limits/key/{limited['id']}", w.op,
                          {"requests_per_minute": 1})
    assert status == 200, out
    status, out, _ = call(w.url, "POST", "/admin/v1/keys", limited["key"], {"name": "escape"})
    assert status == 403, out


# 10 ------------------------------------------------------------------------------------


def test_10_an_administrator_sets_no_limits_on_someone_above_them(w):
    agency = created(w.url, w.op, "/admin/v1/agencies",
                     {"name": "Ops", "branch": "executive"})["id"]
    boss = created(w.url, w.op, "/admin/v1/users",
                   {"agency_id": agency, "name": "op2", "clearance": "SECRET",
                    "nationality": "USA", "roles": ["operator"]})
    adm = created(w.url, w.op, "/admin/v1/users",
                  {"agency_id": agency, "name": "adm", "clearance": "SECRET",
                   "nationality": "USA", "roles": ["agency-admin", "user"]})
    adm_key = created(w.url, w.op, "/admin/v1/keys", {"user_id": adm["id"], "name": "k"})["key"]
    analyst = created(w.url, w.op, "/admin/v1/users",
                      {"agency_id": agency, "name": "ann", "clearance": "SECRET",
                       "nationality": "USA"})
    status, out, _ = call(w.url, "PUT", f"/admin/v1/limits/user/{boss['id']}", adm_key,
                          {"requests_per_minute": 1})
    assert status == 403, out
    status, out, _ = call(w.url, "PUT", f"/admin/v1/limits/user/{analyst['id']}", adm_key,
                          {"requests_per_minute": 100})
    assert status == 200, out


# 11 ------------------------------------------------------------------------------------


def _pki(d: Path):
    """A CA, a server certificate for localhost, and client certificates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def write(name, cert, key):
        (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return d / f"{name}.pem", d / f"{name}.key"

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Enclave CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    write("ca", ca, ca_key)

    def leaf(name, rdns, sans, usage):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(x509.Name(rdns)).issuer_name(ca_name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return write(name, b.sign(ca_key, hashes.SHA256()), key)

    leaf("server", [x509.NameAttribute(NameOID.COMMON_NAME, "localhost")],
         [x509.DNSName("localhost")], ExtendedKeyUsageOID.SERVER_AUTH)
    cn, o = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME
    client = ExtendedKeyUsageOID.CLIENT_AUTH
    leaf("victim", [x509.NameAttribute(cn, "victim"), x509.NameAttribute(o, "B")],
         [x509.RFC822Name("victim@b.example")], client)
    # One RDN whose common name holds a comma: printed, it reads like the victim's subject.
    leaf("forged", [x509.NameAttribute(cn, "victim, O=B")], [], client)
    leaf("gateway", [x509.NameAttribute(cn, "gateway")], [], client)


def test_11_certificate_mappings_neither_cross_agencies_nor_reveal_them(w):
    d = w.tmp / "pki"
    d.mkdir()
    _pki(d)

    def ctx(who):
        c = ssl.create_default_context(cafile=str(d / "ca.pem"))
        c.load_cert_chain(str(d / f"{who}.pem"), str(d / f"{who}.key"))
        return c

    m, op = bare_server(w.tmp, "mtls", {
        "HIGHSIDE_TLS_CERT": str(d / "server.pem"), "HIGHSIDE_TLS_KEY": str(d / "server.key"),
        "HIGHSIDE_TLS_CLIENT_CA": str(d / "ca.pem"),
        "HIGHSIDE_AUTH_FAILURES_PER_MINUTE": "1000000"}, context=ctx("gateway"),
        scheme="https")
    try:
        gw = ctx("gateway")

        def op_call(method, path, body=None, key=op):
            return call(m.url, method, path, key, body, context=gw)

        a = op_call("POST", "/admin/v1/agencies", {"name": "A", "branch": "executive"})[1]["id"]
        b = op_call("POST", "/admin/v1/agencies", {"name": "B", "branch": "executive"})[1]["id"]

        def user(agency, name, roles=("user",)):
            status, u, _ = op_call("POST", "/admin/v1/users", {
                "agency_id": agency, "name": name, "clearance": "SECRET", "nationality": "USA",
                "roles": list(roles)})
            assert status == 201, u
            return u

        a_user, victim = user(a, "a-user"), user(b, "victim")
        a_admin = user(a, "a-admin", ("agency-admin", "user"))
        a_admin_key = op_call("POST", "/admin/v1/keys",
                              {"user_id": a_admin["id"], "name": "k"})[1]["key"]
        status, out, _ = op_call("POST", "/admin/v1/certificates",
                                 {"user_id": victim["id"], "kind": "subject",
                                  "value": "CN=victim, O=B"})
        assert status == 201, out
        # A subject in use and another agency's user: one answer, which reveals nothing.
        in_use = op_call("POST", "/admin/v1/certificates",
                         {"user_id": a_user["id"], "kind": "subject", "value": "CN=victim,O=B"},
                         key=a_admin_key)
        cross = op_call("POST", "/admin/v1/certificates",
                        {"user_id": victim["id"], "kind": "san", "value": "x@b.example"},
                        key=a_admin_key)
        assert in_use[0] == cross[0] == 403, (in_use, cross)
        assert in_use[1] == cross[1], (in_use[1], cross[1])
        # A still unmapped field of the victim's certificate mapped to A's user does not lock
        # the victim out: the mapping made first decides.
        status, out, _ = op_call("POST", "/admin/v1/certificates",
                                 {"user_id": a_user["id"], "kind": "san",
                                  "value": "victim@b.example"}, key=a_admin_key)
        assert status == 201, out
        status, me, _ = call(m.url, "GET", "/admin/v1/whoami", context=ctx("victim"))
        assert status == 200 and me["user_id"] == victim["id"], me
        # Subjects are matched RDN by RDN: a comma inside a CN forges no O=.
        status, me, _ = call(m.url, "GET", "/admin/v1/whoami", context=ctx("forged"))
        assert status == 401, me
    finally:
        m.kill()


# 12 ------------------------------------------------------------------------------------


def test_12_a_denial_with_a_huge_field_is_still_recorded(w):
    status, body, headers = call(w.url, "POST", "/v1/chat/completions", w.auditor_key,
                                 {"model": "m" * 1_000_000,
                                  "messages": [{"role": "user", "content": "x"}]})
    assert status == 403, body
    records = audit(w.url, w.op, request_id=headers["x-request-id"])
    decisions = [r for r in records if r["type"] == "decision"]
    assert len(decisions) == 1 and decisions[0]["decision"] == "deny", records
    assert "[truncated: 1000000 bytes, sha256 " in decisions[0]["model"], decisions[0]["model"][:300]


# 13 ------------------------------------------------------------------------------------


def test_13_a_forced_call_grammar_is_bounded(w):
    tool = {"type": "function", "function": {"name": "pick", "parameters": {
        "type": "object", "properties": {"x": {"enum": [f"v{i}" for i in range(100_000)]}},
        "required": ["x"]}}}
    status, body, _ = call(w.url, "POST", "/v1/chat/completions", w.s_key,
                           {**chat("Pick one."), "tools": [tool], "tool_choice": "required"},
                           timeout=60)
    assert status == 400 and body["error"]["param"] == "tools", body
    status, body, _ = call(w.url, "POST", "/v1/chat/completions", w.s_key, chat("Say hi."))
    assert status == 200, body


# 14 ------------------------------------------------------------------------------------


def test_14_model_output_above_the_request_label_is_withheld(w):
    client = openai.OpenAI(base_url=f"{w.url}/v1", api_key=w.u_key, max_retries=0,
                           timeout=CALL_TIMEOUT)
    # The prompt holds no marking (a lowercase one-letter mark is prose); the model writes one.
    prompt = "upper:here is the summary.\n(s) the source is in place.\nend"
    stream = client.chat.completions.create(
        model=ROUTE, messages=[{"role": "user", "content": prompt}], max_tokens=50,
        stream=True)
    text = ""
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
    assert "output_label_exceeded" in str(e.value.body or e.value), e.value
    assert text == "HERE IS THE SUMMARY.\n", repr(text)
    assert "(S)" not in text and "SOURCE" not in text
    status, body, headers = call(w.url, "POST", "/v1/chat/completions", w.u_key,
                                 {"model": ROUTE, "max_tokens": 50,
                                  "messages": [{"role": "user", "content": prompt}]})
    assert status == 403 and body["error"]["code"] == "output_label_exceeded", body
    completion = [r for r in audit(w.url, w.op, request_id=headers["x-request-id"])
                  if r["type"] == "completion"]
    assert completion[0]["finish_reason"] == "output_label_exceeded", completion
    assert completion[0]["output_label"] == "SECRET", completion


# 15 ------------------------------------------------------------------------------------


def test_15_readiness_logs_reads_and_signed_headers(w):
    # Readiness: a status word for anyone, the details with a credential.
    status, body, _ = call(w.url, "GET", "/health/ready")
    assert status == 200 and set(body) == {"status"}, body
    status, body, _ = call(w.url, "GET", "/health/ready", w.op)
    assert status == 200 and body["models"], body
    # An upstream error that echoes the prompt: its length and digest are logged, not it.
    canary = "CANARY-PROMPT-7f3a"
    status, body, _ = call(w.url, "POST", "/v1/chat/completions", w.u_key,
                           {"model": ROUTE, "max_tokens": 5,
                            "messages": [{"role": "user", "content": f"fail:{canary}"}]})
    assert status >= 400, body
    assert canary not in json.dumps(body)
    log = w.h.log_path.read_text(errors="replace")
    assert canary not in log
    assert "body_sha256" in log
    # Reads of the audit log and of usage are recorded themselves.
    assert call(w.url, "GET", "/admin/v1/audit?type=decision&limit=1", w.auditor_key)[0] == 200
    month = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
    assert call(w.url, "GET", f"/admin/v1/usage?month={month}", w.op)[0] == 200
    reads = audit(w.url, w.op, type="read")
    assert any(r["action"] == "audit.query" and r["user"] == w.auditor["id"] for r in reads), reads
    assert any(r["action"] == "usage.report" for r in reads), reads
    # SigV4: a declared label and an Idempotency-Key must be signed.
    pair, _ = _bedrock(w, w.s_key)
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                       "inferenceConfig": {"maxTokens": 1}}).encode()
    for name, value in (("X-Highside-Label", "UNCLASSIFIED"), ("Idempotency-Key", "k-1")):
        headers = _signed(w.url, pair, f"/model/{MODEL}/converse", body)
        headers[name] = value
        req = urllib.request.Request(f"{w.url}/model/{MODEL}/converse", data=body,
                                     method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=CALL_TIMEOUT) as r:
                pytest.fail(f"accepted an unsigned {name}: {r.status}")
        except urllib.error.HTTPError as e:
            assert e.code == 403, e.read()
            assert e.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
        signed = _signed(w.url, pair, f"/model/{MODEL}/converse", body, {name: value})
        req = urllib.request.Request(f"{w.url}/model/{MODEL}/converse", data=body,
                                     method="POST", headers=signed)
        with urllib.request.urlopen(req, timeout=CALL_TIMEOUT) as r:
            assert r.status == 200
