"""Dynamic batching for the JSON API: requests that arrive together are scored in one pass.

Each request's texts wait in one queue. A single worker takes the oldest request, gathers the ones behind it (those
already waiting, and those that arrive within `max_wait_ms`) up to `max_tokens` (estimated from characters), scores
them all with one call of `score` in a worker thread (the inference core sorts them by length into batches), and
answers each request with its own rows. While a batch is scored the next one gathers, so under load the passes are as
large as the token budget allows. The wait is only spent while requests come together (the last pass served
several): a client alone is answered at once, as without batching.

The queue is bounded by texts: a request that would take it past `max_queued_texts` is refused with `Busy`, carrying
a Retry-After in seconds estimated from the throughput measured so far. Nothing is dropped once accepted: every
accepted request gets its rows or the scoring's exception.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import numpy as np

CHARS_PER_TOKEN = 4  # English text, WordPiece: the token budget is estimated without tokenizing twice
SPECIAL_TOKENS = 2  # [CLS] and [SEP]


class Busy(Exception):
    """The queue is full: come back after `retry_after` seconds."""

    def __init__(self, retry_after: int, queued: int):
        super().__init__(f"the server is busy ({queued:,} texts queued): retry in {retry_after} s")
        self.retry_after, self.queued = retry_after, queued


def estimate_tokens(texts: list[str]) -> int:
    """Tokens the texts take in a batch, estimated from their characters."""
    return sum(len(text) // CHARS_PER_TOKEN + SPECIAL_TOKENS for text in texts)


@dataclass
class _Request:
    texts: list[str]
    tokens: int
    answer: asyncio.Future


@dataclass
class _Queue:
    """The queue and worker of one event loop (a server restarted in the same process runs a new loop)."""

    loop: asyncio.AbstractEventLoop
    waiting: deque = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task | None = None


class Batcher:
    """Scores the texts of concurrent requests together: `await batcher(texts)` -> their rows of `score(texts)`.

    Args:
        score: texts -> an array with one row per text (blocking; it runs in a worker thread, one call at a time).
        max_wait_ms: how long a batch waits for more requests once its first one is taken.
        max_tokens: a batch closes when the next request would take it past this many (estimated) tokens; a larger
            request is scored alone.
        max_queued_texts: texts waiting or being scored at most; past it, requests are refused with `Busy`.
    """

    def __init__(self, score: Callable[[list[str]], np.ndarray], max_wait_ms: float = 2.0, max_tokens: int = 8192,
                 max_queued_texts: int = 4096):  # fmt: skip
        self.score, self.max_wait = score, max_wait_ms / 1000
        self.max_tokens, self.max_queued_texts = max_tokens, max_queued_texts
        self.queued = 0  # texts accepted and not yet answered
        self.texts_per_second: float | None = None  # measured, for Retry-After
        self.batch_sizes: list[int] = []  # requests per pass, for the benchmark
        self._queue: _Queue | None = None

    async def __call__(self, texts: list[str]) -> np.ndarray:
        queue = self._started()
        if self.queued and self.queued + len(texts) > self.max_queued_texts:
            raise Busy(self.retry_after(), self.queued)
        request = _Request(list(texts), estimate_tokens(texts), queue.loop.create_future())
        self.queued += len(texts)
        queue.waiting.append(request)
        queue.arrived.set()
        try:
            return await request.answer
        finally:
            self.queued -= len(texts)

    def retry_after(self) -> int:
        """Seconds until the queue has room again, from the measured throughput (1 to 60)."""
        if not self.texts_per_second:
            return 1
        return min(60, max(1, math.ceil(self.queued / self.texts_per_second)))

    def _started(self) -> _Queue:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._queue.loop is not loop:
            self._queue = _Queue(loop)
            self._queue.worker = loop.create_task(self._work(self._queue))
        return self._queue

    async def _work(self, queue: _Queue) -> None:
        shared = False  # whether the last pass served several requests: only then is company worth waiting for
        while True:
            batch = [await self._next(queue, None)]
            tokens, deadline = batch[0].tokens, queue.loop.time() + (self.max_wait if shared else 0.0)
            while queue.waiting or queue.loop.time() < deadline:
                if queue.waiting and tokens + queue.waiting[0].tokens > self.max_tokens:
                    break  # the next request starts the next batch
                request = await self._next(queue, max(0.0, deadline - queue.loop.time()))
                if request is None:
                    break
                batch.append(request)
                tokens += request.tokens
            shared = len(batch) > 1
            await self._score(batch)

    @staticmethod
    async def _next(queue: _Queue, timeout: float | None) -> _Request | None:
        """The oldest waiting request; with a timeout, None when none arrives in time."""
        while not queue.waiting:
            queue.arrived.clear()
            if timeout is None:
                await queue.arrived.wait()
                continue
            try:
                await asyncio.wait_for(queue.arrived.wait(), timeout)
            except TimeoutError:
                return None
        return queue.waiting.popleft()

    async def _score(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        started = time.perf_counter()
        try:
            rows = await anyio.to_thread.run_sync(self.score, texts)
        except Exception as err:  # every request of the batch hears it; the worker goes on
            for request in batch:
                if not request.answer.done():
                    request.answer.set_exception(err)
            return
        rate = len(texts) / max(time.perf_counter() - started, 1e-6)
        self.texts_per_second = rate if self.texts_per_second is None else 0.8 * self.texts_per_second + 0.2 * rate
        self.batch_sizes.append(len(batch))
        start = 0
        for request in batch:
            if not request.answer.done():  # a client that went away was cancelled: its rows are dropped
                request.answer.set_result(rows[start : start + len(request.texts)])
            start += len(request.texts)
