"""The classifier service (`python -m model.service`) over HTTP, behind the in-process worker's interface.

`ChatCore` calls `await worker.classify(data)` and gets a `Result`; it does not know whether the
answer came from a thread in this process or from a Ray Serve replica on another machine. This
module imports neither torch nor fastai: a frontend that uses it stays small and starts fast.

Classifying a photo changes nothing on the service, so a request that fails on the way (a replica
killed mid-burst, the service restarting, a 5xx) is sent again, a bounded number of times with
backoff; only when the service stays unreachable does the user hear "busy, try again".
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import httpx

from model.answers import PhotoAnswer
from model.decode import DecodeLimits

from .worker import Busy, Result, boxed_jpeg

__all__ = ["RemoteClassifier", "ServiceModel"]

log = logging.getLogger(__name__)

# Statuses that say "not now" rather than "not this photo": sent again.
_RETRY_STATUSES = {429, 500, 502, 503, 504}


@dataclass
class ServiceModel:
    """What `/about` and the web page read of the model being served: its metadata, from the service."""

    model_info: object | None = None
    problem: str | None = None


class RemoteClassifier:
    """`await classify(data)` answered by the classifier service at `url`; `await aclose()` when done."""

    def __init__(
        self,
        url: str,
        timeout: float = 30.0,
        attempts: int = 5,
        backoff: float = 0.2,
        annotate_from: int = 2,
        max_in_flight: int = 64,
        limits: DecodeLimits | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.annotate_from = annotate_from
        self.limits = limits  # the photos' size cap, for drawing their boxes here
        self.classifier = ServiceModel()  # read by the app as it reads an in-process classifier
        self._client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=max_in_flight))
        self._slots = asyncio.Semaphore(max_in_flight)
        self._waiting = 0

    async def classify(self, data: bytes) -> Result:
        """The service's answer for one photo; `Busy` when it stays unreachable through every attempt."""
        self._waiting += 1
        try:
            async with self._slots:
                answer = await self._post(data)
        finally:
            self._waiting -= 1
        if len(answer.faces) < self.annotate_from:
            return Result(answer)
        return Result(answer, await asyncio.to_thread(boxed_jpeg, data, answer, None, self.limits))

    async def _post(self, data: bytes) -> PhotoAnswer:
        for attempt in range(self.attempts):
            try:
                response = await self._client.post(
                    f"{self.url}/classify", content=data, headers={"Content-Type": "application/octet-stream"}
                )
            except httpx.HTTPError as e:
                log.warning(
                    "classifier service unreachable (%s), attempt %d of %d",
                    type(e).__name__,
                    attempt + 1,
                    self.attempts,
                )
            else:
                if response.status_code not in _RETRY_STATUSES:
                    return self._answer(response)
                log.warning(
                    "classifier service said %d, attempt %d of %d", response.status_code, attempt + 1, self.attempts
                )
            if attempt + 1 < self.attempts:
                # Full jitter: many frontends retrying together do not arrive together.
                await asyncio.sleep(random.uniform(0, self.backoff * 2**attempt))
        raise Busy

    @staticmethod
    def _answer(response: httpx.Response) -> PhotoAnswer:
        try:
            return PhotoAnswer.from_json(response.json())
        except (ValueError, KeyError, TypeError) as e:
            raise RuntimeError(f"the classifier service sent an answer that is not one ({response.status_code})") from e

    def waiting(self) -> int:
        """Photos sent to the service (or waiting to be), not yet answered."""
        return self._waiting

    async def about(self) -> dict | None:
        """The service's `/about`: the model's classes and metadata; None when it cannot be reached."""
        try:
            response = await self._client.get(f"{self.url}/about")
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError):
            return None

    async def aclose(self) -> None:
        await self._client.aclose()
