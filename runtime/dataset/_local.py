"""The local backend: parts read and tokenized on one thread, embedded on the caller's, written on a
third, a slice at a time (``SLICE_CHARS`` of text, the whole part for most), with at most two slices
waiting at each hand-over, so memory grows neither with the corpus nor with its documents' length."""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ._batch import BatchResult, EmbedBatch
from ._sources import PartSpec

if TYPE_CHECKING:
    from ._score import ScoreBatch

T = TypeVar("T")
_DONE = object()
_END = object()  # after a part's last slice


class _Worker(threading.Thread):
    """Runs ``produce`` into a bounded queue; an exception is handed to the consumer, not lost."""

    def __init__(self, produce: Callable[[Callable[[Any], bool]], None], depth: int) -> None:
        super().__init__(daemon=True)
        self.q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self._produce = produce

    def put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            self._produce(self.put)
        except BaseException as e:  # handed over, re-raised by the consumer
            self.put(_Failure(e))
        self.put(_DONE)

    def items(self) -> Iterator[Any]:
        while True:
            item = self.q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def run_local(
    parts: list[PartSpec],
    slices: Callable[[PartSpec], Iterable[Any]],
    batch: EmbedBatch | ScoreBatch,
    write: Callable[[PartSpec, Iterator[BatchResult]], None],
    on_rows: Callable[[PartSpec, int], None] | None = None,
) -> None:
    """Embed ``parts`` in order, each a slice at a time: slices read and prepared ahead on one thread,
    embedded on this one, written behind on another (``write(part, results)`` takes the part's
    slices' results as they come, and writes the part whole); ``on_rows(part, n)`` as each model
    batch of ``n`` of its rows is done."""

    def produce(put: Callable[[Any], bool]) -> None:
        for part in parts:
            for table in slices(part):
                if not put((part, batch.prepare(table))):
                    return
            if not put((part, _END)):
                return

    reader = _Worker(produce, depth=2)
    written: queue.Queue[Any] = queue.Queue(maxsize=2)
    write_error: list[BaseException] = []

    def results(item: tuple[PartSpec, Any]) -> Iterator[BatchResult]:
        """A part's results from its first (``item``) up to its end; a stop before it abandons the
        part (its file is not kept)."""
        while item is not _DONE:
            if item[1] is _END:
                return
            yield item[1]
            item = written.get()
        raise _Abandoned()

    def drain() -> None:
        while (item := written.get()) is not _DONE:
            if write_error:
                continue  # the queue is emptied until the job stops
            try:
                write(item[0], results(item))
            except _Abandoned:
                return  # the job stopped mid-part
            except BaseException as e:
                write_error.append(e)

    writer = threading.Thread(target=drain, daemon=True)
    reader.start()
    writer.start()
    try:
        for part, prepared in _checked(reader.items(), write_error):
            if prepared is _END:
                written.put((part, _END))
            else:
                written.put((part, batch.run(prepared, None if on_rows is None else functools.partial(on_rows, part))))
    finally:
        reader.stop.set()
        written.put(_DONE)
        writer.join()
        reader.join(timeout=5)
    if write_error:
        raise write_error[0]


class _Abandoned(Exception):
    """The job stopped before a part's last slice: its file is discarded, not written."""


def _checked(items: Iterable[tuple[PartSpec, Any]], errors: list[BaseException]) -> Iterator[tuple[PartSpec, Any]]:
    for item in items:
        if errors:
            raise errors[0]
        yield item
