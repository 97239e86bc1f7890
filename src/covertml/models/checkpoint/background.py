"""Writing a file on a background thread, so that reading and computing go on meanwhile.

Writing gigabytes is often slower than transforming them (the kernel throttles a process
that dirties pages faster than the disk takes them). :class:`BackgroundWriter` queues up to
:data:`PENDING` buffers and writes them in order on one thread; the producer keeps reading
and transforming the next chunks. A buffer handed over must not change until it is
written: at most ``PENDING`` buffers wait and one is being written at any time, so a
producer that rotates ``PENDING + 2`` output buffers never overwrites one still in use.
"""

from __future__ import annotations

import queue
import threading
from types import TracebackType
from typing import IO

PENDING = 2  # buffers queued and not yet written, at most


class BackgroundWriter:
    """Writes buffers to ``handle`` in order on a background thread.

    Errors of the thread are raised by the next :meth:`write` or by :meth:`close`.

    Example:
        >>> import io
        >>> out = io.BytesIO()
        >>> with BackgroundWriter(out) as w:
        ...     w.write(b"ab")
        ...     w.write(memoryview(b"cd"))
        >>> out.getvalue()
        b'abcd'
    """

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self._queue: queue.Queue[memoryview | bytes | None] = queue.Queue(maxsize=PENDING)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="covertml-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self.handle.write(item)
                except BaseException as exc:  # raised in the producer
                    self._error = exc

    def write(self, data: memoryview | bytes) -> None:
        """Queues ``data`` (blocks while :data:`PENDING` buffers wait)."""
        self._raise()
        self._queue.put(data)

    def close(self) -> None:
        """Writes what is queued, stops the thread, raises its error if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
            return
        self._error = None  # the producer's error wins; stop without writing more
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put(None)
        self._thread.join()
