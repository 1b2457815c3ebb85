"""Server-side batching: concurrent requests to one signature merged into one model call.

What TF Serving's `--enable_batching` does with `batching.config` (`BatchingParameters`): each
request's rows wait at most `batch_timeout_micros` for others; up to `max_batch_size` rows run as
one call on one of `num_batch_threads` threads, padded up to the next of `allowed_batch_sizes`
(if given) by repeating the last row, and every request gets its own rows of each output back.
At most `max_enqueued_batches` batches wait; beyond that a request is refused as UNAVAILABLE
(503), as TF Serving's queue does. A request of more rows than `max_batch_size` runs alone.
Only signatures whose every input and output has a leading batch dimension are batched (the
recommender's `recommend`, with its scalar `k`, is not).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Callable, Mapping

import numpy as np

from serving.layout import BatchingOptions
from serving.status import ServingStatus

Arrays = Mapping[str, np.ndarray]  # inputs: validated arrays, rows on axis 0


class _Task:
    __slots__ = ("inputs", "rows", "future")

    def __init__(self, inputs: Arrays, rows: int) -> None:
        self.inputs, self.rows, self.future = inputs, rows, Future()


class BatchScheduler:
    """Merges the requests to one signature; `run(inputs) -> outputs` is the model call."""

    def __init__(self, run: Callable[[Arrays], dict[str, np.ndarray]], options: BatchingOptions,
                 name: str = "") -> None:
        self._run, self.options, self.name = run, options, name
        self._queue: deque[_Task] = deque()
        self._queued_rows = 0
        self._ready = threading.Condition()
        self._closed = False
        self.batch_sizes: list[int] = []  # rows of every call made (padding included)
        self._threads = [threading.Thread(target=self._loop, name=f"batch-{name}-{i}",
                                          daemon=True)
                         for i in range(max(1, options.num_batch_threads))]
        for thread in self._threads:
            thread.start()

    def submit(self, inputs: Arrays) -> dict[str, np.ndarray]:
        """Run `inputs` (rows along axis 0) in a batch; blocks until its outputs are back."""
        return self.submit_async(inputs).result()

    def submit_async(self, inputs: Arrays) -> Future:
        """Queue `inputs` for a batch; a future of its own rows of the outputs. Raises
        UNAVAILABLE at once when the queue is full or the scheduler closed."""
        rows = int(next(iter(inputs.values())).shape[0])
        capacity = self.options.max_enqueued_batches * self.options.max_batch_size
        with self._ready:
            if self._closed:
                raise ServingStatus("UNAVAILABLE", f"{self.name}: the batch scheduler is closed")
            if self._queued_rows + rows > capacity and self._queue:
                raise ServingStatus("UNAVAILABLE", "The batch scheduling queue to which this "
                                    "task was submitted is full")
            task = _Task(inputs, rows)
            self._queue.append(task)
            self._queued_rows += rows
            self._ready.notify()
        return task.future

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def _take_batch(self) -> list[_Task] | None:
        """The next batch: the oldest task, then whatever arrives within the timeout and fits."""
        limit = self.options.max_batch_size
        with self._ready:
            while not self._queue:
                if self._closed:
                    return None
                self._ready.wait()
            batch = [self._queue.popleft()]
            rows = batch[0].rows
            deadline = time.monotonic() + self.options.batch_timeout_micros / 1e6
            while rows < limit:
                if self._queue:
                    if rows + self._queue[0].rows > limit:
                        break
                    task = self._queue.popleft()
                    batch.append(task)
                    rows += task.rows
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._ready.wait(left)
            self._queued_rows -= rows
            return batch

    def _loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            # A request whose caller gave up (its deadline passed) while queued is dropped.
            batch = [task for task in batch if task.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                outputs = self._run_batch(batch)
            except BaseException as error:  # every request of the batch gets the error
                for task in batch:
                    task.future.set_exception(error)
                continue
            start = 0
            for task in batch:
                task.future.set_result({k: v[start:start + task.rows] for k, v in outputs.items()})
                start += task.rows

    def _run_batch(self, batch: list[_Task]) -> dict[str, np.ndarray]:
        if len(batch) == 1 and not self.options.allowed_batch_sizes:
            self.batch_sizes.append(batch[0].rows)
            return self._run(batch[0].inputs)
        merged = {name: np.concatenate([t.inputs[name] for t in batch], axis=0)
                  for name in batch[0].inputs}
        rows = sum(t.rows for t in batch)
        padded = next((size for size in sorted(self.options.allowed_batch_sizes) if size >= rows),
                      rows)
        if padded > rows:  # repeat the last row up to an allowed size, as TF Serving pads
            merged = {name: np.concatenate([value, np.repeat(value[-1:], padded - rows, axis=0)])
                      for name, value in merged.items()}
        self.batch_sizes.append(padded)
        return self._run(merged)


def batchable(input_shapes: Mapping[str, list[int] | None],
              output_shapes: Mapping[str, list[int] | None]) -> bool:
    """Whether every input and output of a signature has a leading batch dimension (-1)."""
    shapes = [*input_shapes.values(), *output_shapes.values()]
    return bool(shapes) and all(s is not None and len(s) >= 1 and s[0] == -1 for s in shapes)
