"""A fake OpenAI-compatible chat-completions server with one fixed reply.

opencode's custom provider (`"npm": "@ai-sdk/openai-compatible"`, `options.baseURL`)
talks to it exactly as it would to a paid API: POST <baseURL>/chat/completions,
streamed back as server-sent events ending in `data: [DONE]`. Every request is
recorded (and logged to a file, headers included) so a test can check what reached
the "provider" and, just as important, what did not reach anywhere else.

    with FakeOpenAI("10.88.0.1", reply="hello from the fake") as fake:
        settings["opencode"]["provider"]["fake"]["options"]["baseURL"] = fake.base_url
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODEL = "fake-model"


def host_address() -> str:
    """The host's address on its way out (the interface of the default route), where
    containers reach a fake running on the host as they reach any server outside.
    (Each user's network, and so its gateway, exists only once the stack is up.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("198.51.100.1", 9))  # TEST-NET-2, off-link: no packet is sent, only the route is picked
        return s.getsockname()[0]


def opencode_settings(provider: str, name: str, base_url: str, key_variable: str, model_name: str) -> dict:
    """The `opencode` settings of a custom provider at base_url serving MODEL; its key
    comes from the environment variable key_variable (an env file, never the config)."""
    return {
        "provider": {
            provider: {
                "npm": "@ai-sdk/openai-compatible",
                "name": name,
                "options": {"baseURL": base_url, "apiKey": f"{{env:{key_variable}}}"},
                "models": {MODEL: {"name": model_name}},
            }
        },
        "model": f"{provider}/{MODEL}",
    }


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: dict


class FakeOpenAI:
    """Serves /v1/chat/completions (streamed or not) and /v1/models on host:port.

    `hold=True` keeps each completion waiting until `release()`, so a test can look
    at the world (process lists, logs) while the client is mid-request.
    """

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        reply: str,
        log_path: Path | None = None,
        hold: bool = False,
        hold_timeout: float = 120.0,
    ):
        self.reply = reply
        self.log_path = log_path
        self.requests: list[Received] = []
        self.completion_arrived = threading.Event()
        self._released = threading.Event()
        if not hold:
            self._released.set()
        self._hold_timeout = hold_timeout
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._server.server_address[0]

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join()

    def release(self) -> None:
        self._released.set()

    def completions(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- the HTTP side ------------------------------------------------------------
    def _record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)
            if self.log_path:
                with open(self.log_path, "a") as log:
                    log.write(f"{received.method} {received.path}\n")
                    for name, value in received.headers.items():
                        log.write(f"{name}: {value}\n")
                    log.write(json.dumps(received.body) + "\n\n")

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # the file log above is the record
                pass

            def _receive(self) -> Received:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"unparsed": raw.decode(errors="replace")}
                # Header names as HTTP/1.1 writes them, whatever case the client sent.
                headers = {"-".join(p.capitalize() for p in k.split("-")): v for k, v in self.headers.items()}
                received = Received(self.command, self.path, headers, body)
                fake._record(received)
                return received

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._receive()
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "fake"}]})
                else:
                    self._json(404, {"error": {"message": f"no such path {self.path}"}})

            def do_POST(self) -> None:
                received = self._receive()
                if not received.path.endswith("/chat/completions"):
                    self._json(404, {"error": {"message": f"no such path {received.path}"}})
                    return
                fake.completion_arrived.set()
                fake._released.wait(fake._hold_timeout)
                model = received.body.get("model", MODEL)
                if received.body.get("stream"):
                    self._stream(model)
                else:
                    self._json(
                        200,
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": model,
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": fake.reply},
                                }
                            ],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                        },
                    )

            def _stream(self, model: str) -> None:
                # No Content-Length: the body ends when the connection closes.
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                created = int(time.time())

                def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> None:
                    payload = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }
                    if usage:
                        payload["usage"] = usage
                    self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
                    self.wfile.flush()

                chunk({"role": "assistant", "content": ""})
                for i, word in enumerate(fake.reply.split(" ")):  # a few chunks, like a real stream
                    chunk({"content": word if i == 0 else " " + word})
                chunk({}, "stop", {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        return Handler
