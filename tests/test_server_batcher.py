"""The cross-request batcher alone, with a fake model: merging, budget, order, failures."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from embedrt import Tokenized
from embedrt.server._batcher import Batcher, QueueFullError
from embedrt.server._metrics import Metrics


def _tok(*lengths: int) -> Tokenized:
    ids = [[n] * n for n in lengths]
    return Tokenized(
        ids, [[0] * n for n in lengths], np.array(lengths, np.int64), np.zeros(len(lengths), bool)
    )


class FakeModel:
    """Each row's vector is its first token id; records the batch sizes it saw."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[int] = []
        self.alone: list[bool] = []
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, tok: Tokenized, alone: bool = True) -> np.ndarray:
        self.gate.wait(10)
        self.calls.append(len(tok))
        self.alone.append(alone)
        if self.fail_on is not None and self.fail_on in tok.lengths:
            raise RuntimeError("model failed")
        return np.array([[row[0]] for row in tok.ids], np.float32)


def _run(batcher: Batcher, jobs: list[Tokenized]) -> list[object]:
    async def main() -> list[object]:
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(t) for t in jobs), return_exceptions=True)
        finally:
            await batcher.stop()

    return asyncio.run(main())


def test_each_request_gets_its_own_rows_in_order() -> None:
    model = FakeModel()
    jobs = [_tok(3, 1, 2), _tok(5), _tok(4, 4, 7, 1)]
    out = _run(Batcher(model, Metrics(), max_wait_s=0.05), jobs)
    for job, got in zip(jobs, out, strict=True):
        assert isinstance(got, np.ndarray)
        assert got[:, 0].tolist() == job.lengths.tolist()
    assert model.calls == [8]  # all three merged into one model call


def test_token_budget_splits_batches() -> None:
    model = FakeModel()
    _run(
        Batcher(model, Metrics(), max_batch_tokens=10, max_wait_s=0.05), [_tok(4), _tok(4), _tok(4), _tok(20)]
    )
    assert model.calls == [2, 1, 1]  # 4+4 fit, the third 4 waits, 20 runs alone


def test_batching_off_runs_one_request_per_call() -> None:
    model = FakeModel()
    _run(Batcher(model, Metrics(), batching=False), [_tok(1, 2), _tok(3), _tok(4)])
    assert model.calls == [2, 1, 1]


def test_a_failing_batch_fails_only_its_requests() -> None:
    model = FakeModel(fail_on=9)
    out = _run(Batcher(model, Metrics(), max_batch_tokens=10, max_wait_s=0.05), [_tok(9), _tok(3), _tok(4)])
    assert isinstance(out[0], RuntimeError)
    assert [np.asarray(x)[:, 0].tolist() for x in out[1:]] == [[3], [4]]


def test_full_queue_refuses() -> None:
    model = FakeModel()
    model.gate.clear()

    async def main() -> None:
        batcher = Batcher(model, Metrics(), max_queue=1)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(_tok(1)))
        await asyncio.sleep(0.05)  # the first one is in the model now
        queued = asyncio.ensure_future(batcher.submit(_tok(2)))
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError):
            await batcher.submit(_tok(3))
        model.gate.set()
        assert (await running)[0, 0] == 1 and (await queued)[0, 0] == 2
        await batcher.stop()

    asyncio.run(main())


def _abandoned(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("embedrt_abandoned_inputs_total")


def test_rows_of_a_request_given_up_on_are_not_run() -> None:
    """A request cancelled (its client left, or it timed out) while its batch runs: its pieces not yet
    started are skipped, and the next request runs next."""
    model = FakeModel()
    model.gate.clear()
    metrics = Metrics()

    async def main() -> np.ndarray:
        batcher = Batcher(model, metrics, max_rows=1)
        batcher.start()
        job = asyncio.ensure_future(batcher.submit(_tok(3, 3, 3)))
        await asyncio.sleep(0.05)  # its first row is in the model
        job.cancel()
        model.gate.set()
        try:
            return await batcher.submit(_tok(2))
        finally:
            await batcher.stop()

    assert asyncio.run(main())[0, 0] == 2
    assert model.calls == [1, 1] and _abandoned(metrics) == 2  # one row of three, then the next request


def test_a_full_queue_first_drops_requests_given_up_on() -> None:
    model = FakeModel()
    model.gate.clear()
    metrics = Metrics()

    async def main() -> list[float]:
        batcher = Batcher(model, metrics, max_queue=1)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(_tok(1)))
        await asyncio.sleep(0.05)  # in the model now
        queued = asyncio.ensure_future(batcher.submit(_tok(2)))
        await asyncio.sleep(0)
        queued.cancel()
        await asyncio.sleep(0)
        third = asyncio.ensure_future(batcher.submit(_tok(3)))  # the queue holds only a cancelled job
        model.gate.set()
        try:
            return [float((await running)[0, 0]), float((await third)[0, 0])]
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == [1, 3]
    assert model.calls == [1, 1] and _abandoned(metrics) == 1


def test_a_big_request_goes_in_turns_behind_later_small_ones_and_finishes_through_a_drain() -> None:
    """A request of more tokens than a batch holds runs a batch's worth at a time, each turn queued
    behind the requests that came meanwhile; once admitted, it finishes even while the batcher stops."""
    model = FakeModel()
    model.gate.clear()

    async def main() -> tuple[np.ndarray, np.ndarray, bool]:
        batcher = Batcher(model, Metrics(), max_batch_tokens=8, max_wait_s=0)
        batcher.start()
        big = asyncio.ensure_future(batcher.submit(_tok(4, 4, 4, 4, 5)))  # turns of 8, 8 and 5 tokens
        await asyncio.sleep(0.05)  # its first turn is in the model
        small = asyncio.ensure_future(batcher.submit(_tok(3)))
        await asyncio.sleep(0)
        stopping = asyncio.ensure_future(batcher.stop())  # a drain: no new requests, admitted ones finish
        await asyncio.sleep(0)
        model.gate.set()
        first_small = await small
        big_waits = not big.done()
        out = await big
        await stopping
        return out, first_small, big_waits

    big, small, big_waits = asyncio.run(main())
    assert big[:, 0].tolist() == [4, 4, 4, 4, 5] and small[0, 0] == 3 and big_waits
    assert model.calls == [2, 1, 2, 1]  # the big one's first turn, the small one, then its two other turns


def test_runs_partition_rows_longest_first_under_the_caps() -> None:
    from embedrt.server._batcher import plan_runs

    lengths = np.array([10, 142, 12, 9, 60, 11, 13, 12], np.int64)
    runs = plan_runs(lengths, max_rows=4, max_padded_tokens=128)
    assert sorted(np.concatenate(runs).tolist()) == list(range(len(lengths)))
    assert runs[0].tolist() == [1]  # 142 alone: over the cap with anything else
    assert runs[1].tolist() == [4]  # 60 with a 13 would pad 13 to 60: dearer than a run of its own
    for run in runs:
        assert len(run) <= 4 and (len(run) == 1 or len(run) * lengths[run].max() <= 128)
    flat = lengths[np.concatenate(runs)]
    assert (np.diff(flat) <= 0).all()
    assert sorted(len(r) for r in plan_runs(np.full(10, 5), max_rows=4, max_padded_tokens=1000)) == [2, 4, 4]


def test_waits_for_company_only_while_requests_are_arriving() -> None:
    async def main(expect_more: bool) -> list[int]:
        model = FakeModel()
        batcher = Batcher(model, Metrics(), max_wait_s=0.5)
        batcher.start()

        async def late() -> np.ndarray:
            with batcher.arriving():  # "reading its body" for 50 ms
                await asyncio.sleep(0.05)
            return await batcher.submit(_tok(2))

        first = asyncio.ensure_future(batcher.submit(_tok(1)))
        second = asyncio.ensure_future(late() if expect_more else asyncio.sleep(0.05, None))
        await asyncio.sleep(0)
        await first
        if expect_more:
            await second
        else:
            await second
            await batcher.submit(_tok(2))
        await batcher.stop()
        return model.calls

    assert asyncio.run(main(expect_more=True)) == [2]  # the first waited for the arriving one
    assert asyncio.run(main(expect_more=False)) == [1, 1]  # nobody arriving: no wait


def test_small_requests_merged_with_a_big_one_are_answered_first() -> None:
    model = FakeModel()
    release = threading.Event()

    def stalls_after_the_first_run(tok: Tokenized, alone: bool) -> np.ndarray:
        if model.calls:
            release.wait(10)
        return model(tok, alone)

    async def main() -> None:
        batcher = Batcher(stalls_after_the_first_run, Metrics(), max_wait_s=0.05, max_run_tokens=128)
        batcher.start()
        big = asyncio.ensure_future(batcher.submit(_tok(100, 100, 100)))
        small = asyncio.ensure_future(batcher.submit(_tok(2)))
        done, _ = await asyncio.wait([small, big], return_when=asyncio.FIRST_COMPLETED)
        assert done == {small} and not big.done()
        release.set()
        assert (await big)[:, 0].tolist() == [100, 100, 100] and (await small)[0, 0] == 2
        await batcher.stop()

    asyncio.run(main())
    assert model.calls == [1, 1, 1, 1]  # 2 alone, then each 100 alone (the 128-token cap)


class MeetingModel(FakeModel):
    """Each call waits until ``parties`` calls are inside at once (or 2 s), and records whether they met."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties)
        self.met: list[bool] = []

    def __call__(self, tok: Tokenized, alone: bool = True) -> np.ndarray:
        try:
            self.barrier.wait(2)
            self.met.append(True)
        except threading.BrokenBarrierError:
            self.met.append(False)
        return super().__call__(tok, alone)


def test_streams_share_each_batch() -> None:
    model = MeetingModel(2)
    jobs = [_tok(4, 4), _tok(4), _tok(4)]
    out = _run(Batcher(model, Metrics(), max_wait_s=0.05, streams=2), jobs)
    assert [np.asarray(o)[:, 0].tolist() for o in out] == [[4, 4], [4], [4]]  # each request its own rows
    # 4 rows merged, cut into two pieces of half the tokens each, both in the model at once
    assert model.calls == [2, 2] and model.met == [True, True] and model.alone == [False, False]


def test_streams_run_a_lone_small_request_on_all_threads() -> None:
    """A request alone in its batch, of at most one run's tokens, runs its pieces one after another,
    each marked alone (the model runs it on all its threads); a bigger one is shared out."""
    model = MeetingModel(2)
    out = _run(Batcher(model, Metrics(), streams=2, max_run_tokens=64, solo=True), [_tok(30, 2, 2)])
    assert np.asarray(out[0])[:, 0].tolist() == [30, 2, 2]
    assert model.calls == [2, 1] and model.met == [False, False] and model.alone == [True, True]
    model = MeetingModel(2)
    _run(Batcher(model, Metrics(), streams=2, max_run_tokens=64, solo=True), [_tok(40, 40)])
    assert model.calls == [1, 1] and model.met == [True, True] and model.alone == [False, False]
    model = MeetingModel(2)  # OpenVINO's streams: no run on all the threads, so even a lone request is shared
    _run(Batcher(model, Metrics(), streams=2, max_run_tokens=64), [_tok(30, 2, 2)])
    assert sorted(model.calls) == [1, 2] and model.met == [True, True] and model.alone == [False, False]


def test_one_stream_runs_one_batch_at_a_time() -> None:
    model = MeetingModel(2)
    out = _run(Batcher(model, Metrics(), batching=False), [_tok(3), _tok(5)])
    assert [np.asarray(o)[:, 0].tolist() for o in out] == [[3], [5]]
    assert model.met == [False, False]  # never two inside at once
