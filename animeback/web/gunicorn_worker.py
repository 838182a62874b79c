"""The gunicorn worker the production server runs (gunicorn.conf.py): gthread, with its own errors in JSON.

gunicorn answers requests it cannot parse (a malformed request line, a request line or header too long, a bad
chunked encoding) itself, before Flask sees them, with an HTML page. This worker keeps gunicorn's decision (the
status, the log line) and sends the API's error shape instead: {"error": "..."}, application/json.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]

_STATUS = re.compile(rb"^HTTP/1\.1 (\d{3}) ([^\r\n]*)")
_MESSAGE = re.compile(rb"</h1>\s*(.*?)\s*</body>", re.S)


class _Captured:
    """Stands in for the client socket while gunicorn writes its HTML error, to read back what it decided."""

    def __init__(self) -> None:
        self.data = b""

    def sendall(self, data: bytes) -> None:
        self.data += data

    def gettimeout(self) -> float:
        return 0.0  # "non-blocking already": gunicorn then writes with sendall alone


class JsonErrorThreadWorker(ThreadWorker):
    """gunicorn's threaded worker, answering its own errors as JSON."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        captured = _Captured()
        super().handle_error(req, captured, addr, exc)
        status = _STATUS.match(captured.data)
        code, reason = (
            (int(status.group(1)), status.group(2).decode("latin-1")) if status else (500, "Internal Server Error")
        )
        found = _MESSAGE.search(captured.data)
        detail = html.unescape(found.group(1).decode("utf-8", "replace")).strip() if found else ""
        body = json.dumps({"error": f"{reason}: {detail}" if detail else reason}).encode()
        head = (
            f"HTTP/1.1 {code} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        try:
            client.sendall(head + body)
        except OSError:
            pass  # the client has gone: nothing to tell it
