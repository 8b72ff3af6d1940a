"""The JSON API's dynamic batching (space/batching.py): concurrent requests share one pass, each gets its own rows,
the token budget closes a batch, a full queue refuses with a Retry-After, and a failed pass fails only its batch."""

import asyncio
import sys
import threading

import numpy as np
import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "space"))
from batching import Batcher, Busy, estimate_tokens  # noqa: E402


class Recorder:
    """A score function that remembers each call's texts and answers each text with its length and position."""

    def __init__(self, gate: threading.Event | None = None, fail_on: str | None = None):
        self.calls: list[list[str]] = []
        self.gate, self.fail_on = gate, fail_on

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(10)
        self.calls.append(list(texts))
        if self.fail_on in texts:
            raise RuntimeError(f"cannot score {self.fail_on!r}")
        return np.array([[len(text), i] for i, text in enumerate(texts)], dtype=float)


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_are_scored_in_one_pass_and_each_gets_its_own_rows():
    score = Recorder()
    batcher = Batcher(score, max_wait_ms=50)
    requests = [["a"], ["bb", "ccc"], ["dddd"], ["eeeee", "ffffff", "g"]]

    async def main():
        return await asyncio.gather(*(batcher(texts) for texts in requests))

    answers = run(main())
    assert score.calls == [[text for texts in requests for text in texts]]  # one pass, in arrival order
    for texts, rows in zip(requests, answers):
        assert rows[:, 0].tolist() == [len(text) for text in texts]
    assert answers[3][:, 1].tolist() == [4, 5, 6]  # rows 4-6 of the shared pass
    assert batcher.batch_sizes == [4] and batcher.queued == 0


def test_the_token_budget_closes_a_batch_and_a_larger_request_is_scored_alone():
    score = Recorder()
    ten = "x" * 32  # 32 characters: 8 + 2 estimated tokens
    assert estimate_tokens([ten]) == 10
    batcher = Batcher(score, max_wait_ms=50, max_tokens=30)

    async def main():
        return await asyncio.gather(batcher([ten]), batcher([ten, ten]), batcher([ten] * 5), batcher([ten]))

    answers = run(main())
    assert [len(call) for call in score.calls] == [3, 5, 1]  # 10 + 20 tokens; 50 alone; the last one
    assert [len(rows) for rows in answers] == [1, 2, 5, 1]


def test_a_client_alone_is_not_kept_waiting_for_company():
    score = Recorder()
    batcher = Batcher(score, max_wait_ms=500)

    async def main():
        first = asyncio.ensure_future(batcher(["one"]))
        await asyncio.sleep(0.1)  # well inside the 500 ms a batch could wait: it did not
        done_early = first.done()
        return done_early, await first, await batcher(["two"])

    done_early, first, second = run(main())
    assert done_early and score.calls == [["one"], ["two"]] and first[0, 0] == 3 and second[0, 0] == 3


def test_once_requests_come_together_a_batch_waits_for_more():
    score = Recorder()
    batcher = Batcher(score, max_wait_ms=200)

    async def main():
        await asyncio.gather(batcher(["a"]), batcher(["b"]))  # one pass of two: requests come together
        third = asyncio.ensure_future(batcher(["c"]))
        await asyncio.sleep(0.05)
        fourth = asyncio.ensure_future(batcher(["d"]))  # 50 ms later, inside the 200 ms the batch now waits
        return await third, await fourth

    run(main())
    assert score.calls == [["a", "b"], ["c", "d"]]


def test_a_full_queue_refuses_with_a_retry_after_and_accepts_again_once_drained():
    gate = threading.Event()
    score = Recorder(gate)
    batcher = Batcher(score, max_wait_ms=0, max_queued_texts=4)

    async def main():
        held = asyncio.ensure_future(batcher(["a", "b", "c"]))  # taken by the worker, which blocks on the gate
        await asyncio.sleep(0.05)
        with pytest.raises(Busy) as refused:
            await batcher(["d", "e"])  # 3 + 2 > 4
        queued_then = batcher.queued
        fits = asyncio.ensure_future(batcher(["f"]))  # 3 + 1 fits
        await asyncio.sleep(0.01)
        gate.set()
        return refused.value, queued_then, await held, await fits

    refused, queued_then, held, fits = run(main())
    assert refused.retry_after == 1 and refused.queued == 3 and queued_then == 3
    assert "busy (3 texts queued): retry in 1 s" in str(refused)
    assert len(held) == 3 and len(fits) == 1 and batcher.queued == 0
    assert score.calls == [["a", "b", "c"], ["f"]]  # the refused request was never scored


def test_retry_after_follows_the_measured_throughput():
    batcher = Batcher(Recorder())
    batcher.queued, batcher.texts_per_second = 450, 100.0
    assert batcher.retry_after() == 5
    batcher.queued, batcher.texts_per_second = 10**6, 1.0
    assert batcher.retry_after() == 60


def test_a_failed_pass_fails_its_own_requests_only():
    score = Recorder(fail_on="boom")
    batcher = Batcher(score, max_wait_ms=30)

    async def main():
        together = await asyncio.gather(batcher(["fine"]), batcher(["boom"]), return_exceptions=True)
        return together, await batcher(["later"])

    together, later = run(main())
    assert all(isinstance(answer, RuntimeError) for answer in together)  # both shared the failed pass
    assert later[0, 0] == 5 and batcher.queued == 0


def test_a_client_that_goes_away_does_not_disturb_the_others():
    gate = threading.Event()
    batcher = Batcher(Recorder(gate), max_wait_ms=30)

    async def main():
        gone = asyncio.ensure_future(batcher(["gone"]))
        stays = asyncio.ensure_future(batcher(["stays"]))
        await asyncio.sleep(0.05)
        gone.cancel()
        gate.set()
        return await stays

    assert run(main())[0, 0] == 5 and batcher.queued == 0


def test_a_new_event_loop_gets_its_own_worker():
    batcher = Batcher(Recorder(), max_wait_ms=0)
    assert run(batcher(["one"]))[0, 0] == 3
    assert run(batcher(["three"]))[0, 0] == 5  # the first loop (and its worker) is gone
