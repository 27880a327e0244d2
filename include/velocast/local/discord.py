"""A local stand-in for Discord's incoming webhooks, for the local stack and the tests.

``POST /api/webhooks/{id}/{token}`` takes Discord's JSON payload (``content``, ``embeds``,
``username`` …) and answers ``204`` like Discord. What it received can be read and cleared, and it
can be told to fail or to answer slowly, so that tests see what a pipeline posted and prove that a
broken webhook does not break the pipeline:

- ``GET /__admin/messages``: ``{"messages": [...], "refused": n}``, delivered posts in order;
  ``DELETE /__admin/messages`` clears them;
- ``POST /__admin/mode`` ``{"status": 500}`` and/or ``{"delay_seconds": 30}``: answer every webhook
  post with that status (nothing delivered) and/or after that delay; ``GET`` reads the mode,
  ``DELETE`` restores the normal one;
- ``GET /health``.

Standard library only (``http.server``, one thread per request so that a delayed post does not
hold the admin endpoints). ``python -m velocast.local.discord --host … --port …`` runs it; the
local stack (``velocast.local.stack``) starts it that way.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

# The webhook the local Airflow connection names (any id and token are accepted).
LOCAL_WEBHOOK_ENDPOINT = "webhooks/1/velocast-local"
WEBHOOK_PATH = re.compile(r"^/api/webhooks/(?P<webhook_id>[0-9]+)/(?P<token>[A-Za-z0-9_-]+)$")
# Discord refuses messages longer than this (error code 50035).
MAX_CONTENT_CHARS = 2000
MAX_DELAY_SECONDS = 600.0


@dataclass(frozen=True)
class Mode:
    """How webhook posts are answered: ``status`` 204 delivers; any other refuses with it."""

    status: int = HTTPStatus.NO_CONTENT
    delay_seconds: float = 0.0


class WebhookState:
    """What the stand-in received and how it answers; shared by the request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self._refused = 0
        self._mode = Mode()
        # Set on shutdown: a delayed answer stops waiting.
        self.stopping = threading.Event()

    def mode(self) -> Mode:
        with self._lock:
            return self._mode

    def set_mode(self, changes: dict[str, Any]) -> Mode:
        """Merge ``status`` and/or ``delay_seconds`` into the mode; raise ``ValueError`` if invalid."""
        unknown = set(changes) - {"status", "delay_seconds"}
        if unknown:
            raise ValueError(f"unknown mode fields: {sorted(unknown)}")
        status = changes.get("status")
        if status is not None and (not isinstance(status, int) or not 200 <= status <= 599):
            raise ValueError("status must be an HTTP status code (200-599)")
        delay = changes.get("delay_seconds")
        if delay is not None and (not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY_SECONDS):
            raise ValueError(f"delay_seconds must be a number between 0 and {MAX_DELAY_SECONDS:g}")
        with self._lock:
            if status is not None:
                self._mode = replace(self._mode, status=status)
            if delay is not None:
                self._mode = replace(self._mode, delay_seconds=float(delay))
            return self._mode

    def reset_mode(self) -> None:
        with self._lock:
            self._mode = Mode()

    def deliver(self, webhook_id: str, token: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._messages.append(
                {
                    "webhook_id": webhook_id,
                    "token": token,
                    "received_at": datetime.now(UTC).isoformat(),
                    "payload": payload,
                }
            )

    def refuse(self) -> None:
        with self._lock:
            self._refused += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"messages": list(self._messages), "refused": self._refused}

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._refused = 0


def payload_problem(payload: object) -> str | None:
    """Why Discord would refuse this payload with a 400, or None if it would post it."""
    if not isinstance(payload, dict):
        return "the request body must be a JSON object"
    content = payload.get("content") or ""
    if not isinstance(content, str):
        return "content must be a string"
    if not content and not payload.get("embeds"):
        return "Cannot send an empty message"
    if len(content) > MAX_CONTENT_CHARS:
        return f"content must be {MAX_CONTENT_CHARS} or fewer in length"
    return None


class WebhookServer(ThreadingHTTPServer):
    """The HTTP server; one daemon thread per request, the state shared."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        self.state = WebhookState()
        super().__init__(address, WebhookHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def shutdown(self) -> None:
        self.state.stopping.set()
        super().shutdown()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Typically a client that gave up on a delayed answer: one line, not a traceback.
        log.warning("request from %s ended early: %s", client_address, sys.exc_info()[1])


class WebhookHandler(BaseHTTPRequestHandler):
    server: WebhookServer

    # --- routing -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(HTTPStatus.OK, {"status": "ok"})
        elif self.path == "/__admin/messages":
            self._json(HTTPStatus.OK, self.server.state.snapshot())
        elif self.path == "/__admin/mode":
            self._json(HTTPStatus.OK, asdict(self.server.state.mode()))
        else:
            self._discord_error(HTTPStatus.NOT_FOUND, "404: Not Found", code=0)

    def do_DELETE(self) -> None:
        if self.path == "/__admin/messages":
            self.server.state.clear()
        elif self.path == "/__admin/mode":
            self.server.state.reset_mode()
        else:
            self._discord_error(HTTPStatus.NOT_FOUND, "404: Not Found", code=0)
            return
        self._empty(HTTPStatus.NO_CONTENT)

    def do_POST(self) -> None:
        if self.path == "/__admin/mode":
            self._post_mode()
            return
        match = WEBHOOK_PATH.match(self.path.split("?", 1)[0])
        if match is None:
            self._discord_error(HTTPStatus.NOT_FOUND, "Unknown Webhook", code=10015)
            return
        self._post_webhook(match["webhook_id"], match["token"])

    # --- handlers ----------------------------------------------------------------------------
    def _post_mode(self) -> None:
        try:
            changes = json.loads(self._body() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("the mode must be a JSON object")
            mode = self.server.state.set_mode(changes)
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            self._json(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": str(error)})
            return
        self._json(HTTPStatus.OK, asdict(mode))

    def _post_webhook(self, webhook_id: str, token: str) -> None:
        body = self._body()
        mode = self.server.state.mode()
        if mode.delay_seconds:
            self.server.state.stopping.wait(mode.delay_seconds)
        if mode.status != HTTPStatus.NO_CONTENT:
            self.server.state.refuse()
            self._discord_error(mode.status, "failure injected by the stand-in (/__admin/mode)", code=0)
            return
        try:
            payload = json.loads(body)
        except ValueError:
            self._discord_error(HTTPStatus.BAD_REQUEST, "The request body contains invalid JSON.", 50109)
            return
        problem = payload_problem(payload)
        if problem is not None:
            self._discord_error(HTTPStatus.BAD_REQUEST, problem, code=50006)
            return
        self.server.state.deliver(webhook_id, token, payload)
        self._empty(HTTPStatus.NO_CONTENT)

    # --- helpers -----------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _discord_error(self, status: int, message: str, code: int) -> None:
        """An error in Discord's shape: ``{"message": …, "code": …}``."""
        self._json(status, {"message": message, "code": code})

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until interrupted."""
    from velocast.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description="Local stand-in for Discord's incoming webhooks.")
    parser.add_argument("--host", default=settings.local_host)
    parser.add_argument("--port", type=int, default=settings.discord_port)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = WebhookServer((args.host, args.port))
    log.info("Discord stand-in listening on %s", server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
