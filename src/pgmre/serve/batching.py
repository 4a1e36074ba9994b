"""Dynamic batching for the service: concurrent requests share one model batch.

On a CPU a batch of 16 posts costs a few single forward passes, so under load serving them one by one
wastes most of the time. One worker thread owns the model: it takes the first waiting request, gathers
whatever else arrives within ``max_wait_s`` (up to ``max_batch``), predicts them together and hands each
caller its own result. A batch that fails is retried one request at a time, so a bad request only fails
itself. When the batch failed for want of explanations, the retries read them from the cache only (the
batch has just asked the backends for all of them), and a damaged or locked cache fails the whole batch
at once, as does an unavailable backend: a backend outage costs one batch's wait, not one per request.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

from pgmre.explain import BackendUnavailable, CacheError, ExplanationsMissing
from pgmre.serve.predictor import Prediction, Predictor, PreparedInput


@dataclass
class _Job:
    prepared: PreparedInput
    top_k: int
    future: Future[Prediction]


class MicroBatcher:
    """``submit(prepared, top_k) -> Future[Prediction]``; thread-safe; ``close()`` stops the worker."""

    def __init__(self, predictor: Predictor, max_batch: int = 16, max_wait_s: float = 0.005) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.predictor = predictor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batches = 0  # statistics: model batches run, and requests served through them
        self.served = 0
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._loop, name="pgmre-batcher", daemon=True)
        self._worker.start()

    def submit(self, prepared: PreparedInput, top_k: int = 3) -> Future[Prediction]:
        if not self._worker.is_alive():
            raise RuntimeError("the batcher is closed")
        future: Future[Prediction] = Future()
        self._jobs.put(_Job(prepared, top_k, future))
        return future

    def close(self) -> None:
        if self._worker.is_alive():
            self._jobs.put(None)
            self._worker.join(timeout=60)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job plus those arriving within the wait; True when a close was requested."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                job = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False

    def _loop(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch, closing = self._gather(first)
            self._run(batch)
            if closing:
                return

    def _run(self, batch: list[_Job]) -> None:
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        k = max(job.top_k for job in batch)
        try:
            predictions = self.predictor.predict_prepared([job.prepared for job in batch], top_k=k)
        except Exception as err:
            if len(batch) == 1 or isinstance(err, (CacheError, BackendUnavailable)):  # the server's state
                for job in batch:
                    job.future.set_exception(err)
                return
            # find the request that fails; the others still get answers (explanations the batch could
            # not get are not asked for again: each request would wait out the backend's retries)
            generate = not isinstance(err, ExplanationsMissing)
            for job in batch:
                self._run_alone(job, generate)
            return
        self.batches += 1
        self.served += len(batch)
        for job, prediction in zip(batch, predictions, strict=True):
            job.future.set_result(dataclasses.replace(prediction, top_k=prediction.top_k[: job.top_k]))

    def _run_alone(self, job: _Job, generate: bool) -> None:
        try:
            [prediction] = self.predictor.predict_prepared([job.prepared], top_k=job.top_k, generate=generate)
        except Exception as err:
            job.future.set_exception(err)
            return
        self.batches += 1
        self.served += 1
        job.future.set_result(prediction)
