"""InfluxQL over ``/query`` (1.x, and the 1.x compatibility API of 2.x/3.x): the rollup task and export read here.

Answers are decoded per series: ``Series(name, tags, columns, values)``. ``stream`` asks for a chunked
answer (``chunked=true``), which InfluxDB sends as one JSON object per line, so a large range is read
with bounded memory. Every request has a timeout; errors are ``QueryError`` naming the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp


class QueryError(Exception):
    """InfluxDB did not answer, refused, or answered with an error for the statement."""


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    tags: Mapping[str, str]
    columns: list[str]
    values: list[list[Any]]


def series_of(result: Mapping[str, Any]) -> list[Series]:
    if "error" in result:
        raise QueryError(str(result["error"]))
    # SHOW statements answer series without a name; empty series come without values.
    return [Series(s.get("name", ""), s.get("tags") or {}, s["columns"], s.get("values") or [])
            for s in result.get("series", [])]


class InfluxQL:
    """One database, one reader account (``Basic`` for 1.x; a token for 2.x is sent as ``Token``)."""

    def __init__(self, url: str, database: str, *, username: str | None = None, password: str | None = None,
                 token: str | None = None, timeout_s: float = 30.0, ca_file: Path | None = None) -> None:
        self._url = url.rstrip("/") + "/query"
        self._database = database
        self._headers: dict[str, str] = {}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif username:
            basic = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {basic}"
        self._timeout_s = timeout_s
        self._ssl = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made lazily: a session belongs to the running loop
            self._session = aiohttp.ClientSession(headers=self._headers, connector=aiohttp.TCPConnector(ssl=self._ssl))
        return self._session

    def _form(self, statement: str, **extra: str) -> dict[str, str]:
        return {"db": self._database, "q": statement, "epoch": "ms", **extra}

    async def run(self, statement: str) -> list[Series]:
        """The series of one statement."""
        try:
            async with asyncio.timeout(self._timeout_s), self._client().post(self._url, data=self._form(statement)) \
                    as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise QueryError(f"InfluxDB at {self._url} unreachable: {exc!r}") from exc
        return series_of(self._results(response.status, text)[0])

    async def stream(self, statement: str, chunk_size: int = 10_000) -> AsyncIterator[Series]:
        """The series of one statement, ``chunk_size`` rows at a time, as InfluxDB sends them."""
        form = self._form(statement, chunked="true", chunk_size=str(chunk_size))
        try:
            async with self._client().post(self._url, data=form,
                                           timeout=aiohttp.ClientTimeout(sock_read=self._timeout_s)) as response:
                if response.status != 200:
                    self._results(response.status, await response.text())
                async for line in response.content:
                    if line.strip():
                        for result in self._results(200, line.decode()):
                            for series in series_of(result):
                                yield series
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise QueryError(f"InfluxDB at {self._url} unreachable: {exc!r}") from exc

    def _results(self, status: int, text: str) -> list[dict[str, Any]]:
        if status != 200:
            raise QueryError(f"InfluxDB at {self._url} refused ({status}): {text[:300]}")
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise QueryError(f"InfluxDB at {self._url} answered with no JSON: {text[:200]!r}") from exc
        if "error" in body:
            raise QueryError(f"InfluxDB at {self._url}: {body['error']}")
        results: list[dict[str, Any]] = body.get("results", [])
        if not results:
            raise QueryError(f"InfluxDB at {self._url} answered with no result")
        return results

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            await asyncio.sleep(0)
