"""InfluxDB 1.x writer: POST /write (db, retention policy, user/password), line protocol, ns precision."""

from __future__ import annotations

import asyncio
import base64
import io
import ssl
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from citytelemetry.sink.errors import RetryableWriteError, classify_status


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class InfluxV1Writer:
    def __init__(self, url: str, database: str, *, retention_policy: str | None = None,
                 username: str | None = None, password: str | None = None, timeout_s: float = 10.0,
                 create_database: bool = False, ca_file: Path | None = None) -> None:
        self._base = url.rstrip("/")
        self._url = self._base + "/write"
        self._database = database
        self._create_database = create_database
        self._params = {"db": database, "precision": "ns"}
        if retention_policy:
            self._params["rp"] = retention_policy
        # A header, not aiohttp.BasicAuth / auth=: both are deprecated in aiohttp 3.14.
        self._headers = {"Authorization": _basic(username, password or "")} if username else {}
        self._timeout = timeout_s
        # Certificate verification is always on; a private CA is added, never verification removed.
        self._ssl = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created lazily: a session must be made inside the running loop
            self._session = aiohttp.ClientSession(headers=self._headers,
                                                  connector=aiohttp.TCPConnector(ssl=self._ssl),
                                                  timeout=aiohttp.ClientTimeout(total=self._timeout))
        return self._session

    async def write(self, lines: Sequence[bytes]) -> None:
        # A file object, not raw bytes: aiohttp warns (and would block the loop) for large raw bodies.
        body = io.BytesIO(b"\n".join(lines))
        try:
            async with self._client().post(self._url, params=self._params, data=body) as response:
                if response.status in {200, 204}:
                    return
                text = await response.text(errors="replace")
                if response.status == 404 and self._create_database and "database not found" in text:
                    await self.create_database()
                    raise RetryableWriteError(f"database {self._database!r} did not exist; created it")
                raise classify_status(response.status, text, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableWriteError(f"InfluxDB unreachable at {self._url}: {exc!r}") from exc

    async def prepare(self) -> None:
        if self._create_database:
            await self.create_database()

    async def create_database(self) -> None:
        """CREATE DATABASE is idempotent in InfluxDB 1.x; it needs a user with admin rights."""
        statement = f'CREATE DATABASE "{self._database}"'
        try:
            async with self._client().post(self._base + "/query", data={"q": statement}) as response:
                if response.status != 200:
                    text = await response.text(errors="replace")
                    raise classify_status(response.status, text, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableWriteError(f"InfluxDB unreachable at {self._base}: {exc!r}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            await asyncio.sleep(0)  # let aiohttp close its connector's transports
