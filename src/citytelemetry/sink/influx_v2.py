"""InfluxDB 2.x/3.x writer through ``influxdb-client``'s async client (org, bucket, token)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from citytelemetry.sink.errors import RetryableWriteError, classify_status

# influxdb-client declares WritePrecision members as plain str class attributes.
NS_PRECISION = cast("WritePrecision", WritePrecision.NS)


class InfluxV2Writer:
    def __init__(self, url: str, *, org: str, bucket: str, token: str, timeout_s: float = 10.0,
                 ca_file: Path | None = None) -> None:
        self._ca_file = str(ca_file) if ca_file else None
        self._url, self._org, self._bucket, self._token = url, org, bucket, token
        self._timeout_ms = int(timeout_s * 1000)
        self._timeout_s = timeout_s
        self._client: InfluxDBClientAsync | None = None

    def _api(self) -> InfluxDBClientAsync:
        if self._client is None:  # created lazily: it opens an aiohttp session bound to the running loop
            self._client = InfluxDBClientAsync(url=self._url, token=self._token, org=self._org,
                                               timeout=self._timeout_ms, ssl_ca_cert=self._ca_file)
        return self._client

    async def prepare(self) -> None:
        """Nothing to do: a 2.x bucket (or 3.x database) is created by its operator, not by a writer."""

    async def write(self, lines: Sequence[bytes]) -> None:
        body = b"\n".join(lines)
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._api().write_api().write(bucket=self._bucket, org=self._org, record=body,
                                                    write_precision=NS_PRECISION)
        except ApiException as exc:
            headers: Mapping[str, str] = exc.headers or {}
            body = exc.body
            text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
            raise classify_status(int(exc.status or 0), text, headers.get("Retry-After")) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableWriteError(f"InfluxDB unreachable at {self._url}: {exc!r}") from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()  # type: ignore[no-untyped-call]
            self._client = None
