"""A small synchronous JSON client for the API server (urllib + the session CA), with
watch streams. Enough for fixtures and smoke tests; the operator under test brings its own
client.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

JsonObject = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer; ``status`` is the HTTP code, ``body`` the decoded Status (if any)."""

    def __init__(self, status: int, body: JsonObject | str, method: str, path: str) -> None:
        self.status = status
        self.body = body
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"{method} {path} -> {status}: {message}")


class ApiClient:
    """JSON requests to one API server with one bearer token."""

    def __init__(self, server: str, ca_file: Path, token: str, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=str(ca_file))

    def request(
        self,
        method: str,
        path: str,
        body: JsonObject | list[Any] | None = None,
        params: Mapping[str, str | int | bool] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON (or text) or raise ApiError."""
        with self._open(method, path, body, params, content_type, timeout) as resp:
            raw = resp.read().decode()
        return _decode(raw)

    def get(self, path: str, **params: str | int | bool) -> Any:
        return self.request("GET", path, params=params)

    def create(self, path: str, body: JsonObject, **params: str | int | bool) -> Any:
        return self.request("POST", path, body, params=params)

    def replace(self, path: str, body: JsonObject) -> Any:
        return self.request("PUT", path, body)

    def patch(
        self, path: str, body: JsonObject | list[Any], content_type: str = MERGE_PATCH
    ) -> Any:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, **params: str | int | bool) -> Any:
        return self.request("DELETE", path, params=params)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def watch(
        self,
        path: str,
        resource_version: str | None = None,
        timeout_seconds: int = 30,
        **params: str | int | bool,
    ) -> Iterator[JsonObject]:
        """Yield watch events (``{"type": ..., "object": ...}``) for a collection ``path``
        until the server closes the stream after ``timeout_seconds``."""
        query: dict[str, str | int | bool] = {
            "watch": "true",
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": "true",
            **params,
        }
        if resource_version is not None:
            query["resourceVersion"] = resource_version
        with self._open("GET", path, None, query, "", timeout_seconds + 10) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)

    def _open(
        self,
        method: str,
        path: str,
        body: JsonObject | list[Any] | None,
        params: Mapping[str, str | int | bool] | None,
        content_type: str,
        timeout: float | None,
    ) -> Any:
        url = self.server + path
        if params:
            url += "?" + urllib.parse.urlencode(
                {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
            )
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            return urllib.request.urlopen(req, context=self._ssl, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode(errors="replace")
            raise ApiError(exc.code, _decode(raw), method, path) from None


def _decode(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
