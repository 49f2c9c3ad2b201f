"""Third-party errors that may pass, mapped to dyrygent's own in this one place.

A lost connection or a timeout of Redis (redis-py) or of the database (SQLAlchemy) becomes
:class:`~dyrygent.errors.StoreUnavailableError`; one of the broker (kombu, py-amqp, sockets)
becomes :class:`~dyrygent.errors.BrokerUnavailableError`. Both carry the original as
``error`` and chain it. Anything else (a Lua script error, a constraint violation, a bug)
passes unchanged: retrying it would not help.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, TypeVar

from dyrygent.errors import BrokerUnavailableError, StoreUnavailableError

__all__ = ["broker_calls", "broker_failure", "store_calls", "store_failure", "transient"]

F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def _store_errors() -> tuple[type[BaseException], ...]:
    """The store errors that may pass, from the client libraries that are installed."""
    found: list[type[BaseException]] = []
    try:
        import redis.exceptions as r

        found += [r.ConnectionError, r.TimeoutError]  # BusyLoadingError is a ConnectionError
    except ImportError:
        pass
    try:
        import sqlalchemy.exc as s

        # OperationalError: connection refused or lost, deadlock, lock wait timeout
        found += [s.OperationalError, s.DisconnectionError, s.TimeoutError]
    except ImportError:
        pass
    return tuple(found)


@functools.cache
def _broker_errors() -> tuple[type[BaseException], ...]:
    """The broker errors that may pass (kombu wraps most connection errors in its own)."""
    from kombu.exceptions import OperationalError

    found: list[type[BaseException]] = [OperationalError, ConnectionError, TimeoutError]
    try:
        from amqp.exceptions import RecoverableConnectionError

        found.append(RecoverableConnectionError)
    except ImportError:
        pass
    return tuple(found)


def store_failure(exc: BaseException, call: str) -> StoreUnavailableError | None:
    """The StoreUnavailableError for ``exc`` raised by ``call``, or None if it is not one
    that may pass."""
    if isinstance(exc, StoreUnavailableError) or not isinstance(exc, _store_errors()):
        return None
    return StoreUnavailableError(
        f"{call}: the workflow store did not answer ({type(exc).__name__}: {exc}); the call "
        f"can be retried when it is back",
        error=exc,
    )


def broker_failure(exc: BaseException, call: str) -> BrokerUnavailableError | None:
    """The BrokerUnavailableError for ``exc`` raised by ``call``, or None if it is not one
    that may pass."""
    if isinstance(exc, BrokerUnavailableError) or not isinstance(exc, _broker_errors()):
        return None
    return BrokerUnavailableError(
        f"{call}: the broker did not answer ({type(exc).__name__}: {exc}); the call can be "
        f"retried when it is back",
        error=exc,
    )


@contextmanager
def store_calls(call: str) -> Iterator[None]:
    """Map store errors that may pass, raised inside the block, to StoreUnavailableError."""
    try:
        yield
    except Exception as exc:
        mapped = store_failure(exc, call)
        if mapped is None:
            raise
        raise mapped from exc


@contextmanager
def broker_calls(call: str) -> Iterator[None]:
    """Map broker errors that may pass, raised inside the block, to BrokerUnavailableError."""
    try:
        yield
    except Exception as exc:
        mapped = broker_failure(exc, call)
        if mapped is None:
            raise
        raise mapped from exc


def transient(method: F) -> F:
    """Decorate a store method so that its store errors that may pass are raised as
    StoreUnavailableError naming the call, e.g. ``RedisStore.claim('wf-1')``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            what = f"{type(self).__name__}.{method.__name__}({args[0]!r})" if args else ""
            mapped = store_failure(exc, what or f"{type(self).__name__}.{method.__name__}()")
            if mapped is None:
                raise
            raise mapped from exc

    return wrapper  # type: ignore[return-value]
