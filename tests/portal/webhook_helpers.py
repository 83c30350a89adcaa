"""A webhook receiver for tests: a local HTTP server in a thread that records every request and
verifies its signature with the algorithm of docs/webhooks.md."""

import hashlib
import hmac
import itertools
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portal.notifications import Draft, notify_many

TOLERANCE = 300  # seconds, as docs/webhooks.md advises
_keys = itertools.count(1)


def verify(secret: str, headers, body: bytes, *, now: float | None = None) -> bool:
    """docs/webhooks.md's receiver check, as a receiver would write it."""
    timestamp = headers.get("Webhook-Timestamp", "")
    signature = headers.get("Webhook-Signature", "")
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > TOLERANCE:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, part.removeprefix("v1="))
               for part in signature.split() if part.startswith("v1="))


@dataclass
class Received:
    method: str
    path: str
    headers: dict
    body: bytes


@dataclass
class Receiver:
    """`url(path)` to register; `requests` lists what arrived; `answers` (path → callable returning
    (status, headers)) and `delay` shape the answers."""

    server: ThreadingHTTPServer
    requests: list = field(default_factory=list)
    answers: dict = field(default_factory=dict)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def ids(self) -> list[str]:
        return [r.headers.get("Webhook-Id") for r in self.requests]


@pytest.fixture
def receiver():
    holder = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self):
            rec: Receiver = holder["r"]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with rec.lock:
                rec.requests.append(Received(self.command, self.path, dict(self.headers.items()), body))
            if rec.delay:
                time.sleep(rec.delay)
            status, headers = rec.answers.get(self.path, lambda: (200, {}))()
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_POST = _answer
        do_GET = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["r"] = rec = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def emit(advertiser, kind: str = "deposit_received", **context) -> int:
    """One outbox event, as a change writes it (portal.notifications.notify_many); its id."""
    context = {"amount": "$10.00", **context}
    return notify_many([Draft(advertiser, kind, f"test-webhook-event-{next(_keys)}", context)])[0]
