"""A small tus 1.0.0 client over the standard library's ``http.client``, for the file tests and
the benchmark: one request per connection, as the server answers ``Connection: close``."""

from __future__ import annotations

import base64
import http.client
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from tests.helpers import T


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lowercase names
    body: bytes


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


class FilesClient:
    """Requests to one server's ``/files`` with one session token."""

    def __init__(
        self, address: tuple[str, int], token: str | None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host, self.port = address[0], address[1]
        self.token = token
        self.tls = tls

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        *,
        chunked: bool = False,
        timeout: float = 10.0,
    ) -> Answer:
        conn: http.client.HTTPConnection
        if self.tls is not None:
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=T(timeout), context=self.tls
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=T(timeout))
        try:
            all_headers = {"Tus-Resumable": "1.0.0"}
            if self.token is not None:
                all_headers["Authorization"] = f"Bearer {self.token}"
            all_headers.update(headers or {})
            conn.request(method, path, body=body, headers=all_headers, encode_chunked=chunked)
            resp = conn.getresponse()
            data = resp.read()
            return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def create(self, length: int, **meta: str) -> Answer:
        return self.request(
            "POST",
            "/files",
            headers={"Upload-Length": str(length), "Upload-Metadata": metadata(**meta)},
        )

    def patch(
        self, location: str, offset: int, body: bytes | Iterable[bytes], **kw: object
    ) -> Answer:
        headers = {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        return self.request("PATCH", location, body, headers, **kw)  # type: ignore[arg-type]

    def upload(self, data: bytes, **meta: str) -> tuple[str, int]:
        """Create and send ``data`` in one PATCH; (location, message id)."""
        created = self.create(len(data), **meta)
        assert created.status == 201, created
        location = created.headers["location"]
        done = self.patch(location, 0, data)
        assert done.status == 204, done
        assert done.headers["upload-offset"] == str(len(data))
        return location, int(done.headers["upload-message-id"])
