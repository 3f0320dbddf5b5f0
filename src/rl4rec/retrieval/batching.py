"""Merging the texts of concurrent reward calls into one embedder call (used by the RetrievalService)."""

from __future__ import annotations

import threading
import time
from typing import Any

import torch

#: Most texts one merged embedder call takes from concurrent callers (see :class:`EncodeBatcher`).
MAX_BATCH_TEXTS = 512


class _Request:
    __slots__ = ("done", "error", "lead", "result", "texts")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.done = threading.Event()
        self.lead = False
        self.result: torch.Tensor | None = None
        self.error: BaseException | None = None


class EncodeBatcher:
    """Merges the texts of concurrent callers into one embedder call (leader/follower, no extra thread).

    A threaded Ray actor serves several reward calls at once; encoding each call's handful of texts
    separately wastes the embedder on tiny batches and makes the calls fight over the CPU threads.
    Here the first caller to arrive encodes everything queued so far in one call and hands each caller
    its rows; callers that arrive meanwhile wait and are served by the next round. A lone caller is
    encoded alone, exactly as without batching. Merged batches pad differently, so vectors can differ
    from a lone call in the last float bit (about 1e-7), which can swap a rank only on exact near-ties.
    """

    def __init__(self, encode: Any, max_texts: int = MAX_BATCH_TEXTS) -> None:
        self._encode = encode
        self.max_texts = max_texts
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._leader_active = False
        self.batches = 0
        self.texts = 0
        self.seconds = 0.0

    def encode(self, texts: list[str]) -> torch.Tensor:
        request = _Request(texts)
        with self._lock:
            self._queue.append(request)
            if not self._leader_active:  # the queue is empty whenever no leader is active
                self._leader_active = request.lead = True
        if not request.lead:
            request.done.wait()
        if request.lead:  # first in the queue: encode one merged round, then hand over
            self._round()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _round(self) -> None:
        with self._lock:
            batch = [self._queue.pop(0)]
            n = len(batch[0].texts)
            while self._queue and n + len(self._queue[0].texts) <= self.max_texts:
                batch.append(self._queue.pop(0))
                n += len(batch[-1].texts)
        try:
            t0 = time.perf_counter()
            emb = self._encode([t for r in batch for t in r.texts])
            start = 0
            for r in batch:
                r.result = emb[start : start + len(r.texts)]
                start += len(r.texts)
            with self._lock:
                self.batches += 1
                self.texts += n
                self.seconds += time.perf_counter() - t0
        except BaseException as exc:  # every caller of the round gets the error
            for r in batch:
                r.error = exc
        finally:
            with self._lock:
                if self._queue:  # promote the oldest waiter: it leads the next round
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._leader_active = False
            for r in batch[1:]:
                r.done.set()
