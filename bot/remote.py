"""The classifier service (`python -m model.service`) over HTTP, behind the in-process worker's interface.

`ChatCore` calls `await worker.classify(data)` and gets a `Result`; it does not know whether the
answer came from a thread in this process or from a Ray Serve replica on another machine. This
module imports neither torch nor fastai: a frontend that uses it stays small and starts fast.

Classifying a photo changes nothing on the service, so a request that fails on the way (a replica
killed mid-burst, the service restarting, a 503, a timeout) is sent again, a bounded number of times with
backoff; only when the service stays unreachable does the user hear "busy, try again". A photo the
service answered is never sent again, whatever the answer: one it could not read, or one that broke
something there, is answered as in-process ("something went wrong reading this photo"), not retried.

As in-process, the frontend's settings decide: its CONFIDENCE_THRESHOLD and STRANGER_DISTANCE go with
each photo and the replica applies them to the unrounded numbers (so replies read exactly as they would
in-process, and frontends with different settings can share one service), and its QUEUE_SIZE bounds the
photos held here: past it, a caller hears "busy" at once, as from the in-process queue.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import httpx

from model.answers import Examined, PhotoAnswer, went_wrong
from model.decode import DecodeLimits
from model.evidence import Explained, FaceEvidence

from .worker import Busy, Result, boxed_jpeg

__all__ = ["KEEPALIVE_CONNECTIONS", "RemoteClassifier", "ServiceModel"]

log = logging.getLogger(__name__)

# Statuses that say "not now" rather than "not this photo": sent again.
_RETRY_STATUSES = {429, 502, 503, 504}
# The service answers every photo it takes with an answer; a 500 without one is Ray Serve's: the replica
# died under the photo (killed, or the photo itself took it down). Sent again, but only this many times,
# so that a photo that takes replicas down cannot take them all.
_REPLICA_DIED_RETRIES = 2
# Connections to the service kept open between photos. A burst opens up to `max_in_flight`; kept, each one costs
# every later request a check (measured: a lone photo after a burst of 200 took 95 ms instead of 78 until they
# expired 5 s later). Sixteen is one full batch of a replica (`@serve.batch` takes up to 16), more than a
# frontend's steady flow needs.
KEEPALIVE_CONNECTIONS = 16


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
        queue_size: int = 32,
        threshold: float | None = None,
        stranger_distance: float | None = None,
    ) -> None:
        """`queue_size`: photos held here at most (sent, or waiting to be); `threshold`, `stranger_distance`:
        as in-process (None: the service's own, the default threshold and the model's trained distance)."""
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.annotate_from = annotate_from
        self.limits = limits  # the photos' size cap, for drawing their boxes here
        self.classifier = ServiceModel()  # read by the app as it reads an in-process classifier
        self._client = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=KEEPALIVE_CONNECTIONS),
        )
        self._slots = asyncio.Semaphore(max_in_flight)
        self._waiting = 0
        self.queue_size = queue_size
        decisions = {"threshold": threshold, "stranger_distance": stranger_distance}
        self._params = {name: repr(value) for name, value in decisions.items() if value is not None}

    async def classify(self, data: bytes) -> Result:
        """The service's answer for one photo; `Busy` at once when `queue_size` photos are held here already,
        and when the service stays unreachable through every attempt."""
        if self._waiting >= self.queue_size:
            raise Busy
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
        died = 0
        for attempt in range(self.attempts):
            try:
                response = await self._client.post(
                    f"{self.url}/classify",
                    content=data,
                    params=self._params,
                    headers={"Content-Type": "application/octet-stream"},
                )
            except httpx.TransportError as e:  # refused, reset, timed out: the photo never got its answer
                log.warning(
                    "classifier service unreachable (%s), attempt %d of %d",
                    type(e).__name__,
                    attempt + 1,
                    self.attempts,
                )
            else:
                if (answer := _answer_in(response)) is not None:
                    return answer
                if response.status_code == 500:
                    died += 1
                    if died > _REPLICA_DIED_RETRIES:
                        log.error("a photo was under a replica that died, %d times; answering it with an error", died)
                        return went_wrong()
                elif response.status_code not in _RETRY_STATUSES:
                    raise RuntimeError(
                        f"the classifier service answered {response.status_code}: {response.text[:200]!r}"
                    )
                log.warning(
                    "classifier service said %d, attempt %d of %d", response.status_code, attempt + 1, self.attempts
                )
            if attempt + 1 < self.attempts:
                # Full jitter: many frontends retrying together do not arrive together.
                await asyncio.sleep(random.uniform(0, self.backoff * 2**attempt))
        raise Busy

    async def examine(self, data: bytes) -> Examined:
        """The service's answer with its faces' chips and descriptors (`POST /examine`), for a feedback press;
        `Busy` when the service cannot be reached."""
        try:
            response = await self._client.post(
                f"{self.url}/examine",
                content=data,
                params=self._params,
                headers={"Content-Type": "application/octet-stream"},
            )
            return Examined.from_json(response.json())
        except (httpx.TransportError, ValueError, KeyError, TypeError) as e:
            log.warning("the classifier service could not examine a photo (%s)", type(e).__name__)
            raise Busy from None

    async def why(self, data: bytes) -> Explained:
        """The service's answer with each face's evidence (`POST /why`), for a "Why?" press; `Busy` when the
        service cannot be reached."""
        _, said = await self._ask(data, {})
        try:
            return Explained.from_json(said)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            log.warning("the classifier service sent no evidence (%s)", type(e).__name__)
            raise Busy from None

    async def why_chip(self, jpeg: bytes) -> FaceEvidence:
        """The evidence for one stored face chip (`POST /why?chip=1`), for the review page; `Busy` when the service
        cannot be reached, ValueError when it says the chip cannot be read."""
        status, said = await self._ask(jpeg, {"chip": "1"})
        if status in (413, 422):
            raise ValueError(str(said.get("error") or "the classifier service could not read this face chip"))
        try:
            return FaceEvidence.from_json(said["evidence"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            log.warning("the classifier service sent no evidence for a chip (%s)", type(e).__name__)
            raise Busy from None

    async def _ask(self, data: bytes, params: dict[str, str]) -> tuple[int, dict]:
        """The status and JSON object of `/why` for `data`, asked once (a press is rare; its presser can retry)."""
        try:
            response = await self._client.post(
                f"{self.url}/why",
                content=data,
                params={**self._params, **params},
                headers={"Content-Type": "application/octet-stream"},
            )
            said = response.json()
        except (httpx.TransportError, ValueError) as e:  # unreachable, or Ray Serve's own text (a replica died)
            log.warning("the classifier service could not explain a photo (%s)", type(e).__name__)
            raise Busy from None
        return response.status_code, said if isinstance(said, dict) else {}

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


def _answer_in(response: httpx.Response) -> PhotoAnswer | None:
    """The photo's answer the response carries (with 200, 413 or 422), or None: Ray Serve's own errors are text."""
    try:
        return PhotoAnswer.from_json(response.json())
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
