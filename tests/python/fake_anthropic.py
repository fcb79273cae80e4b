"""A local stand-in for the Anthropic Messages API, speaking its documented wire format
(https://docs.anthropic.com/en/api/messages and .../messages-streaming): `POST /v1/messages`
with `x-api-key` and `anthropic-version`, answered as one JSON message or as typed SSE events
(`message_start`, `content_block_start`, `ping`, `content_block_delta`, `content_block_stop`,
`message_delta`, `message_stop`), and `GET /v1/models`. It answers with a fixed sentence cut
to `max_tokens` words, counting one token per word, and records every request it receives.
With `tools` (https://docs.anthropic.com/en/docs/build-with-claude/tool-use): a `tool_choice`
of `any` or `tool` is answered with a `tool_use` block (streamed as `input_json_delta`
pieces), and a turn of `tool_result` blocks, whose ids must answer the previous turn's
`tool_use` blocks, with a sentence quoting the first result. A user turn `echo:TEXT` is
answered with TEXT, and `upper:TEXT` with TEXT in capitals (a model writing what its prompt
did not hold); a user turn `fail:TEXT` with HTTP 400 whose error message quotes TEXT (as
real providers echo parts of a bad request).
A hosted provider cannot run here; this is the only fake in the tests."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = "Hello from the Anthropic stand-in, answering every question the same way."
TOOL_INPUT = {"city": "Paris", "unit": "c"}


def _words(content) -> int:
    if isinstance(content, str):
        return len(content.split())
    return sum(len(json.dumps(b).split()) for b in content)


def _tool_results_ok(messages) -> bool:
    """Every tool_result answers a tool_use of the assistant turn just before it."""
    def blocks(m, kind):
        content = m["content"] if isinstance(m["content"], list) else []
        return [b for b in content if b.get("type") == kind]

    for i, m in enumerate(messages):
        results = {b["tool_use_id"] for b in blocks(m, "tool_result")}
        if not results:
            continue
        uses = {b["id"] for b in blocks(messages[i - 1], "tool_use")} if i > 0 else set()
        if m["role"] != "user" or results != uses:
            return False
    return True


class FakeAnthropic:
    def __init__(self, api_key: str):
        self.api_key = api_key
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _error(self, status, kind, message):
                body = json.dumps({"type": "error", "error": {"type": kind, "message": message}})
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def _authorized(self):
                if self.headers.get("x-api-key") != fake.api_key:
                    self._error(401, "authentication_error", "invalid x-api-key")
                    return False
                if self.headers.get("anthropic-version") != "2023-06-01":
                    self._error(400, "invalid_request_error", "anthropic-version is required")
                    return False
                return True

            def do_GET(self):
                if self.path != "/v1/models":
                    return self._error(404, "not_found_error", "not found")
                if not self._authorized():
                    return
                body = json.dumps({"data": [{"type": "model", "id": "claude-fake"}],
                                   "has_more": False}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                if self.path != "/v1/messages":
                    return self._error(404, "not_found_error", "not found")
                if not self._authorized():
                    return
                req = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append(req)
                if not isinstance(req.get("max_tokens"), int) or not req.get("messages"):
                    return self._error(400, "invalid_request_error", "max_tokens and messages are required")
                if any(m.get("role") not in ("user", "assistant") for m in req["messages"]):
                    return self._error(400, "invalid_request_error", "roles must be user or assistant")
                if not _tool_results_ok(req["messages"]):
                    return self._error(400, "invalid_request_error",
                                       "tool_result blocks must answer the previous turn's tool_use blocks")
                tools = req.get("tools") or []
                uses_tools = any(isinstance(m["content"], list) and any(
                    b.get("type") in ("tool_use", "tool_result") for b in m["content"])
                    for m in req["messages"])
                if uses_tools and not tools:
                    return self._error(400, "invalid_request_error",
                                       "requests with tool_use or tool_result blocks must include tools")
                choice = req.get("tool_choice") or {"type": "auto"}
                last = req["messages"][-1]["content"]
                results = [b for b in last if b.get("type") == "tool_result"] \
                    if isinstance(last, list) else []
                call = None
                words = REPLY.split(" ")
                if isinstance(last, str) and last.startswith("fail:"):
                    return self._error(400, "invalid_request_error",
                                       f"cannot process: {last[len('fail:'):]}")
                if isinstance(last, str) and last.startswith("echo:"):
                    words = last[len("echo:"):].split(" ")
                elif isinstance(last, str) and last.startswith("upper:"):
                    words = last[len("upper:"):].upper().split(" ")
                elif results:
                    words = ("The tool said " + str(results[0]["content"])).split(" ")
                elif tools and choice["type"] in ("any", "tool"):
                    name = choice.get("name") or tools[0]["name"]
                    if name not in [t["name"] for t in tools]:
                        return self._error(400, "invalid_request_error", "tool_choice names no tool")
                    call = {"type": "tool_use", "id": f"toolu_fake{len(fake.requests)}",
                            "name": name, "input": TOOL_INPUT}
                    words = []
                out = words[: req["max_tokens"]]
                stop = "tool_use" if call else \
                    ("end_turn" if len(out) == len(words) else "max_tokens")
                prompt = sum(_words(m["content"]) for m in req["messages"]) + \
                    len(req.get("system", "").split())
                produced = len(out) + (len(json.dumps(TOOL_INPUT).split()) if call else 0)
                if not req.get("stream"):
                    content = [{"type": "text", "text": " ".join(out)}] if out else []
                    body = json.dumps({
                        "id": "msg_fake", "type": "message", "role": "assistant",
                        "model": req["model"], "content": content + ([call] if call else []),
                        "stop_reason": stop, "stop_sequence": None,
                        "usage": {"input_tokens": prompt, "output_tokens": produced},
                    }).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()

                def event(kind, data):
                    self.wfile.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()

                event("message_start", {"type": "message_start", "message": {
                    "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
                    "model": req["model"], "stop_reason": None,
                    "usage": {"input_tokens": prompt, "output_tokens": 1}}})
                index = 0
                event("ping", {"type": "ping"})
                if out:
                    event("content_block_start", {"type": "content_block_start", "index": 0,
                                                  "content_block": {"type": "text", "text": ""}})
                    for i, w in enumerate(out):
                        text = w if i == 0 else " " + w
                        event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                      "delta": {"type": "text_delta", "text": text}})
                    event("content_block_stop", {"type": "content_block_stop", "index": 0})
                    index = 1
                if call:
                    event("content_block_start", {"type": "content_block_start", "index": index,
                                                  "content_block": {**call, "input": {}}})
                    whole = json.dumps(call["input"])
                    for part in (whole[:7], whole[7:]):
                        event("content_block_delta", {
                            "type": "content_block_delta", "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": part}})
                    event("content_block_stop", {"type": "content_block_stop", "index": index})
                event("message_delta", {"type": "message_delta",
                                        "delta": {"stop_reason": stop, "stop_sequence": None},
                                        "usage": {"output_tokens": produced}})
                event("message_stop", {"type": "message_stop"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
