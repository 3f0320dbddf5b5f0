"""Clients of the retrieval service: in-process, or a Ray actor reached by name.

Both expose the same methods, so reward functions do not care where the service runs. The Ray
client retries with exponential backoff when the actor dies or is unreachable (a restarted actor
is looked up again by name) and gives up with :class:`ServiceError` after ``retry_timeout_s``.
Errors raised inside the actor (bad arguments) are re-raised here as the original rl4rec error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from rl4rec.errors import RESTART_SERVICE_HINT, Rl4recError, ServiceError, ServiceNotFoundError
from rl4rec.retrieval.ray_service import NAMESPACE, SERVICE_NAME, get_service

logger = logging.getLogger(__name__)


class ServiceClient(Protocol):
    """How a reward function reaches the retrieval service, wherever it runs (in-process or a Ray actor)."""

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any: ...

    async def acall(self, method: str, *args: Any, **kwargs: Any) -> Any: ...


class LocalClient:
    """Calls a :class:`RetrievalService` living in this process."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.service, method)(*args, **kwargs)

    async def acall(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.call, method, *args, **kwargs)


class RayClient:
    """Calls the named Ray actor; survives actor restarts within ``retry_timeout_s``."""

    def __init__(
        self,
        name: str = SERVICE_NAME,
        namespace: str = NAMESPACE,
        address: str | None = "auto",
        retry_timeout_s: float = 300.0,
        call_timeout_s: float = 600.0,
    ) -> None:
        self.name, self.namespace, self.address = name, namespace, address
        self.retry_timeout_s = retry_timeout_s
        self.call_timeout_s = call_timeout_s
        self.handle = get_service(name, namespace, address)

    def _retryable(self) -> tuple[type[BaseException], ...]:
        import ray.exceptions as rex

        return (
            rex.RayActorError,
            rex.GetTimeoutError,
            rex.ActorUnavailableError,
            ServiceNotFoundError,
            ConnectionError,
        )

    @staticmethod
    def _unwrap(exc: BaseException) -> BaseException:
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, Rl4recError) else exc

    def _backoff(self, attempt: int, started: float, exc: BaseException) -> None:
        waited = time.monotonic() - started
        if waited > self.retry_timeout_s:
            raise ServiceError(
                f"RetrievalService unreachable for {waited:.0f}s (last error: {type(exc).__name__}: {exc}). "
                + RESTART_SERVICE_HINT
            ) from None
        delay = min(0.5 * 2**attempt, 15.0)
        logger.warning("RetrievalService call failed (%s); retrying in %.1fs", type(exc).__name__, delay)
        time.sleep(delay)
        with contextlib.suppress(ServiceNotFoundError):
            self.handle = get_service(self.name, self.namespace, self.address)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import ray
        from ray.exceptions import RayTaskError

        started, attempt = time.monotonic(), 0
        while True:
            try:
                ref = getattr(self.handle, method).remote(*args, **kwargs)
                return ray.get(ref, timeout=self.call_timeout_s)
            except RayTaskError as exc:
                raise self._unwrap(exc) from None
            except self._retryable() as exc:
                self._backoff(attempt, started, exc)
                attempt += 1

    async def acall(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Awaits the actor call, so several reward calls can be in flight at once."""
        from ray.exceptions import RayTaskError

        started, attempt = time.monotonic(), 0
        while True:
            try:
                ref = getattr(self.handle, method).remote(*args, **kwargs)
                return await asyncio.wait_for(ref, timeout=self.call_timeout_s)
            except RayTaskError as exc:
                raise self._unwrap(exc) from None
            except (*self._retryable(), TimeoutError) as exc:
                await asyncio.to_thread(self._backoff, attempt, started, exc)
                attempt += 1
