"""The local backend: parts read and tokenized on one thread, embedded on the caller's, written on a
third, with at most two parts waiting at each hand-over, so memory does not grow with the corpus."""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ._batch import BatchResult, EmbedBatch, Prepared
from ._sources import PartSpec

T = TypeVar("T")
_DONE = object()


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
    read: Callable[[PartSpec], Any],
    batch: EmbedBatch,
    write: Callable[[PartSpec, BatchResult], None],
    on_rows: Callable[[PartSpec, int], None] | None = None,
) -> None:
    """Embed ``parts`` in order: read+prepare ahead on one thread, write behind on another;
    ``on_rows(part, n)`` as each model batch of ``n`` of its rows is done."""

    def produce(put: Callable[[Any], bool]) -> None:
        for part in parts:
            if not put((part, batch.prepare(read(part)))):
                return

    reader = _Worker(produce, depth=2)
    written: queue.Queue[Any] = queue.Queue(maxsize=2)
    write_error: list[BaseException] = []

    def drain() -> None:
        while (item := written.get()) is not _DONE:
            if not write_error:
                try:
                    write(*item)
                except BaseException as e:
                    write_error.append(e)

    writer = threading.Thread(target=drain, daemon=True)
    reader.start()
    writer.start()
    try:
        for part, prepared in _checked(reader.items(), write_error):
            result = batch.run(prepared, None if on_rows is None else functools.partial(on_rows, part))
            written.put((part, result))
    finally:
        reader.stop.set()
        written.put(_DONE)
        writer.join()
        reader.join(timeout=5)
    if write_error:
        raise write_error[0]


def _checked(items: Iterable[tuple[PartSpec, Prepared]], errors: list[BaseException]) -> Iterator[tuple[PartSpec, Prepared]]:
    for item in items:
        if errors:
            raise errors[0]
        yield item
