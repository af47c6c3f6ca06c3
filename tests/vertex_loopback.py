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
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any  # parsed JSON, or None for an empty body


Reply = tuple[int, dict[str, Any] | bytes]
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
        with self._lock:  # one request at a time: each answer sees a consistent state
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
            raw_reply = isinstance(payload, bytes)  # a media download
            data = payload if raw_reply else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type", "application/octet-stream" if raw_reply else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    return _Handler


LOCATION = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"


def _not_found(what: str) -> Reply:
    return 404, {"error": {"code": 404, "message": f"{what} not found", "status": "NOT_FOUND"}}


@dataclass
class ModelRegistry:
    """Enough of the Vertex AI Model Registry for upload, list, get by version or alias and
    mergeVersionAliases: versions per model, aliases unique within a model, the first version
    the default, as the real service keeps them."""

    models: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # id -> versions

    def routes(self) -> Routes:
        model = LOCATION + r"/models/(?P<model>[^/@:]+)"
        return {
            ("POST", LOCATION + r"/models:upload"): self.upload,
            ("GET", LOCATION + r"/models"): self.list,
            ("POST", model + r"@(?P<version>[^/:]+):mergeVersionAliases"): self.merge_aliases,
            ("GET", model + r"(@(?P<version>[^/:]+))?"): self.get,
        }

    def version(self, model_id: str, ref: str | None) -> dict[str, Any] | None:
        """A version by id or alias; the default one when ref is None."""
        versions = self.models.get(model_id, {})
        if ref in versions:
            return versions[ref]
        wanted = ref or "default"
        return next((v for v in versions.values() if wanted in v["versionAliases"]), None)

    def _assign(self, model_id: str, target: dict[str, Any], aliases: list[str]) -> None:
        for alias in aliases:
            if alias.startswith("-"):
                target["versionAliases"] = [a for a in target["versionAliases"] if a != alias[1:]]
                continue
            for other in self.models[model_id].values():
                other["versionAliases"] = [a for a in other["versionAliases"] if a != alias]
            target["versionAliases"].append(alias)

    def upload(self, request: Request, match: re.Match[str]) -> Reply:
        parent = request.body.get("parentModel")
        base = f"projects/{match['project']}/locations/{match['location']}"
        if parent:
            model_id = parent.rsplit("/", 1)[-1]
            if model_id not in self.models:
                return _not_found(parent)
            version = str(len(self.models[model_id]) + 1)
        else:
            model_id, version = str(1000 + len(self.models)), "1"
            self.models[model_id] = {}
        name = f"{base}/models/{model_id}"
        body = request.body["model"]
        aliases = list(body.get("versionAliases", []))
        if version == "1" and "default" not in aliases:
            aliases.append("default")  # the first version is always the default
        entry = {**body, "name": name, "versionId": version, "versionAliases": []}
        if body.get("containerSpec"):  # what the service says of a model with its own image
            entry["supportedDeploymentResourcesTypes"] = ["DEDICATED_RESOURCES"]
        self.models[model_id][version] = entry
        self._assign(model_id, entry, aliases)
        response = {
            "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
            "model": name,
            "modelVersionId": version,
        }
        return 200, {"name": f"{name}/operations/{version}", "done": True, "response": response}

    def list(self, request: Request, match: re.Match[str]) -> Reply:
        wanted = request.query.get("filter", [""])[0]
        defaults = [self.version(model_id, None) for model_id in self.models]
        return 200, {"models": [m for m in defaults if m and _matches(m, wanted)]}

    def get(self, request: Request, match: re.Match[str]) -> Reply:
        found = self.version(match["model"], match["version"])
        return (200, found) if found is not None else _not_found(request.path)

    def merge_aliases(self, request: Request, match: re.Match[str]) -> Reply:
        found = self.version(match["model"], match["version"])
        if found is None:
            return _not_found(request.path)
        self._assign(match["model"], found, list(request.body.get("versionAliases", [])))
        return 200, found


@dataclass
class Endpoints:
    """Enough of Vertex AI endpoints for Endpoint.list/create/deploy: create and deployModel
    answer a pending long-running operation that the client then polls (GET .../operations/N,
    done on the first poll); a traffic split must name deployed models and add up to 100."""

    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> resource
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> finished one
    _kinds: list[str] = field(default_factory=list)  # of each operation started

    def routes(self) -> Routes:
        endpoint = LOCATION + r"/endpoints/(?P<endpoint>[^/:]+)"
        return {
            ("POST", LOCATION + r"/endpoints"): self.create,
            ("GET", LOCATION + r"/endpoints"): self.list,
            ("POST", endpoint + r":deployModel"): self.deploy_model,
            ("GET", endpoint): self.get,
            # the REST client polls operations under /ui/ (the console's path), not /v1/
            ("GET", r"/(?:ui|v1)" + LOCATION.removeprefix("/v1") + r"/.+/operations/[^/]+"): (
                self.operation
            ),
        }

    def add(self, project: str, location: str, body: dict[str, Any]) -> dict[str, Any]:
        """An endpoint as the service stores it (tests seed existing ones with this)."""
        endpoint_id = str(100 + len(self.endpoints))
        name = f"projects/{project}/locations/{location}/endpoints/{endpoint_id}"
        resource = {"deployedModels": [], "trafficSplit": {}, **body, "name": name}
        self.endpoints[endpoint_id] = resource
        return resource

    def _pending(self, resource: str, kind: str, response: dict[str, Any]) -> Reply:
        self._kinds.append(kind)
        name = f"{resource}/operations/{len(self._kinds)}"
        typed = {"@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{kind}", **response}
        self.operations[name] = {"name": name, "done": True, "response": typed}
        return 200, {"name": name, "done": False}

    def create(self, request: Request, match: re.Match[str]) -> Reply:
        created = self.add(match["project"], match["location"], request.body)
        return self._pending(created["name"], "Endpoint", created)

    def list(self, request: Request, match: re.Match[str]) -> Reply:
        wanted = request.query.get("filter", [""])[0]
        return 200, {"endpoints": [e for e in self.endpoints.values() if _matches(e, wanted)]}

    def get(self, request: Request, match: re.Match[str]) -> Reply:
        found = self.endpoints.get(match["endpoint"])
        return (200, found) if found is not None else _not_found(request.path)

    def deploy_model(self, request: Request, match: re.Match[str]) -> Reply:
        endpoint = self.endpoints.get(match["endpoint"])
        if endpoint is None:
            return _not_found(request.path)
        deployed_id = str(9000 + sum(k == "DeployModelResponse" for k in self._kinds))
        split = {
            deployed_id if k == "0" else k: int(v) for k, v in request.body["trafficSplit"].items()
        }
        known = {m["id"] for m in endpoint["deployedModels"]} | {deployed_id}
        if sum(split.values()) != 100 or not set(split) <= known:
            message = f"traffic split {split} must add up to 100 over deployed models {known}"
            return 400, {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
        deployed = {**request.body["deployedModel"], "id": deployed_id}
        endpoint["deployedModels"].append(deployed)
        endpoint["trafficSplit"] = split
        return self._pending(endpoint["name"], "DeployModelResponse", {"deployedModel": deployed})

    def operation(self, request: Request, match: re.Match[str]) -> Reply:
        found = self.operations.get(request.path.split("/", 2)[2])
        return (200, found) if found is not None else _not_found(request.path)


@dataclass
class ObjectStore:
    """Enough of the Cloud Storage JSON API for google-cloud-storage to list and download
    objects (the client goes there when STORAGE_EMULATOR_HOST names this server)."""

    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (bucket, name) -> data

    def put_tree(self, folder: Path, gs_uri: str) -> None:
        """Store a local directory's files under gs://bucket/prefix."""
        bucket, _, prefix = gs_uri.removeprefix("gs://").partition("/")
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = f"{prefix.rstrip('/')}/{file.relative_to(folder).as_posix()}"
            self.objects[(bucket, name)] = file.read_bytes()

    def routes(self) -> Routes:
        bucket = r"/storage/v1/b/(?P<bucket>[^/]+)"
        return {
            ("GET", bucket + r"/o"): self.list,
            ("GET", r"/download" + bucket + r"/o/(?P<name>.+)"): self.download,
            ("GET", bucket + r"/o/(?P<name>.+)"): self.metadata,
        }

    def _resource(self, bucket: str, name: str) -> dict[str, Any]:
        data = self.objects[(bucket, name)]
        return {"bucket": bucket, "name": name, "size": str(len(data)), "generation": "1"}

    def list(self, request: Request, match: re.Match[str]) -> Reply:
        prefix = request.query.get("prefix", [""])[0]
        names = sorted(n for b, n in self.objects if b == match["bucket"] and n.startswith(prefix))
        return 200, {"items": [self._resource(match["bucket"], n) for n in names]}

    def metadata(self, request: Request, match: re.Match[str]) -> Reply:
        if (match["bucket"], match["name"]) not in self.objects:
            return _not_found(request.path)
        return 200, self._resource(match["bucket"], match["name"])

    def download(self, request: Request, match: re.Match[str]) -> Reply:
        data = self.objects.get((match["bucket"], match["name"]))
        return (200, data) if data is not None else _not_found(request.path)


def new_bucket_routes() -> Routes:
    """A Cloud Storage bucket that does not exist yet: the client checks a pipeline root's
    bucket before it submits a pipeline job, creates it and grants the service account access."""
    bucket = r"/storage/v1/b/(?P<bucket>[^/]+)"
    return {
        ("GET", bucket): lambda r, m: (404, {"error": {"code": 404, "message": "no bucket"}}),
        ("POST", r"/storage/v1/b"): lambda r, m: (200, {**r.body, "projectNumber": "123"}),
        ("GET", bucket + "/iam"): lambda r, m: (200, {"bindings": [], "etag": "CAE="}),
        ("PUT", bucket + "/iam"): lambda r, m: (200, r.body),
    }


def _matches(model: dict[str, Any], filter_text: str) -> bool:
    """The one filter form the client code here sends: display_name="NAME"."""
    found = re.fullmatch(r'\s*display_name\s*=\s*"([^"]*)"\s*', filter_text)
    return not filter_text or (found is not None and model.get("displayName") == found[1])
