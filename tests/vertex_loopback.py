"""A loopback stand-in for the Vertex AI REST API: records every request, answers a few.

The real `google-cloud-aiplatform` client talks to it with `api_transport="rest"` and
`api_endpoint="http://127.0.0.1:PORT"`. Routes are a dict of (method, path regex) -> handler,
so other tests (pipeline job submission) can add their own; anything unrouted gets a 404 with a
JSON error, as the real API would answer an unknown resource.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any  # parsed JSON, or None for an empty body


Reply = tuple[int, dict[str, Any]]
Handler = Callable[[Request, re.Match[str]], Reply]
Routes = dict[tuple[str, str], Handler]


class Loopback:
    """A threaded HTTP server on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(self, routes: Routes | None = None) -> None:
        self.routes: Routes = dict(routes or {})
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        # a short poll interval keeps shutdown (test teardown) fast
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Loopback:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def find(self, method: str, path_pattern: str) -> list[Request]:
        """Recorded requests with this method whose path matches the regex."""
        return [
            r for r in self.requests if r.method == method and re.fullmatch(path_pattern, r.path)
        ]

    def dispatch(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
        for (method, pattern), handler in self.routes.items():
            match = re.fullmatch(pattern, request.path)
            if method == request.method and match:
                return handler(request, match)
        message = f"no loopback route for {request.method} {request.path}"
        return 404, {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}


def _handler_class(loopback: Loopback) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw.strip() else None
            request = Request(self.command, unquote(url.path), parse_qs(url.query), body)
            status, payload = loopback.dispatch(request)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    return _Handler


LOCATION = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"


@dataclass
class ModelRegistry:
    """Just enough of the Vertex AI Model Registry for `aiplatform.Model.upload` and `list`."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> latest version

    def routes(self) -> Routes:
        return {
            ("POST", LOCATION + r"/models:upload"): self.upload,
            ("GET", LOCATION + r"/models"): self.list,
            ("GET", LOCATION + r"/models/(?P<model>[^/@]+)(@(?P<version>[^/]+))?"): self.get,
        }

    def upload(self, request: Request, match: re.Match[str]) -> Reply:
        parent = request.body.get("parentModel")
        base = f"projects/{match['project']}/locations/{match['location']}"
        if parent:
            model_id = parent.rsplit("/", 1)[-1]
            if model_id not in self.models:
                return 404, {"error": {"code": 404, "message": f"{parent} not found"}}
            version = str(int(self.models[model_id]["versionId"]) + 1)
        else:
            model_id, version = str(1000 + len(self.models)), "1"
        name = f"{base}/models/{model_id}"
        self.models[model_id] = {**request.body["model"], "name": name, "versionId": version}
        response = {
            "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
            "model": name,
            "modelVersionId": version,
        }
        return 200, {"name": f"{name}/operations/{version}", "done": True, "response": response}

    def list(self, request: Request, match: re.Match[str]) -> Reply:
        wanted = request.query.get("filter", [""])[0]
        found = [m for m in self.models.values() if _matches(m, wanted)]
        return 200, {"models": found}

    def get(self, request: Request, match: re.Match[str]) -> Reply:
        model = self.models.get(match["model"])
        if model is None:
            return 404, {"error": {"code": 404, "message": f"{request.path} not found"}}
        return 200, model


def _matches(model: dict[str, Any], filter_text: str) -> bool:
    """The one filter form the client code here sends: display_name="NAME"."""
    found = re.fullmatch(r'\s*display_name\s*=\s*"([^"]*)"\s*', filter_text)
    return not filter_text or (found is not None and model.get("displayName") == found[1])
