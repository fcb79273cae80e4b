"""A local stand-in for the Anthropic Messages API, speaking its documented wire format
(https://docs.anthropic.com/en/api/messages and .../messages-streaming): `POST /v1/messages`
with `x-api-key` and `anthropic-version`, answered as one JSON message or as typed SSE events
(`message_start`, `content_block_start`, `ping`, `content_block_delta`, `content_block_stop`,
`message_delta`, `message_stop`), and `GET /v1/models`. It answers with a fixed sentence cut
to `max_tokens` words, counting one token per word, and records every request it receives.
A hosted provider cannot run here; this is the only fake in the tests."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = "Hello from the Anthropic stand-in, answering every question the same way."


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
                words = REPLY.split(" ")
                out = words[: req["max_tokens"]]
                stop = "end_turn" if len(out) == len(words) else "max_tokens"
                prompt = sum(len(m["content"].split()) for m in req["messages"]) + \
                    len(req.get("system", "").split())
                if not req.get("stream"):
                    body = json.dumps({
                        "id": "msg_fake", "type": "message", "role": "assistant",
                        "model": req["model"], "content": [{"type": "text", "text": " ".join(out)}],
                        "stop_reason": stop, "stop_sequence": None,
                        "usage": {"input_tokens": prompt, "output_tokens": len(out)},
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
                event("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}})
                event("ping", {"type": "ping"})
                for i, w in enumerate(out):
                    text = w if i == 0 else " " + w
                    event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                  "delta": {"type": "text_delta", "text": text}})
                event("content_block_stop", {"type": "content_block_stop", "index": 0})
                event("message_delta", {"type": "message_delta",
                                        "delta": {"stop_reason": stop, "stop_sequence": None},
                                        "usage": {"output_tokens": len(out)}})
                event("message_stop", {"type": "message_stop"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
