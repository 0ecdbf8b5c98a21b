"""Function jobs: ``@corequeue.job(...)`` on a plain ``def`` or ``async def``.

The decorator builds a :class:`~corequeue.jobs.Job` subclass named after the function
(registry name ``module.function``) whose ``run()`` calls it with the stored arguments, so a
function job travels, runs, retries and shows exactly as a class job does. The function is
returned wrapped in a :class:`JobFunction`: calling it runs the function in-process,
``run_in_worker(*args, delay=..., **kwargs)`` enqueues it, ``call(*args, **kwargs)`` builds a
job for :func:`corequeue.enqueue_many`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from corequeue import registry
from corequeue.core import uniqueness
from corequeue.core.delays import Delay
from corequeue.core.policy import check_exception_types
from corequeue.jobs import Job, JobHandle

if TYPE_CHECKING:
    from corequeue.store.queries import ConnectionLike

P = ParamSpec("P")
R = TypeVar("R")

#: The per-call options of ``run_in_worker()``, keyword-only there: a job function may not
#: take a parameter of one of these names (its argument could not be told from the option).
RESERVED = frozenset(
    {
        "queue",
        "delay",
        "priority",
        "retries",
        "unique_key",
        "timeout",
        "connection",
        "unique_until",
        "on_conflict",
        "limit_key",
        "concurrency_limit",
        "rate_limit",
    }
)


class FunctionJob(Job):
    """The base of the classes ``@corequeue.job`` builds: ``run()`` calls the function."""

    function: Callable[..., Any]
    options: dict[str, Any] = {}

    def run(self) -> Any:
        return type(self).function(*self._cq_args, **self._cq_kwargs)

    @classmethod
    def parameters_of(cls) -> tuple[Callable[..., Any], bool]:
        return cls.function, False

    def default_queue(self) -> str:
        return str(self.options.get("queue", "default"))

    def default_priority(self) -> int:
        return int(self.options.get("priority", 0))

    def default_retries(self) -> int:
        return int(self.options.get("retries", 0))

    def default_timeout(self) -> float | None:
        timeout = self.options.get("timeout")
        return None if timeout is None else float(timeout)

    def default_unique_key(self) -> str:
        key = self.options.get("unique_key", "")
        return str(key(*self._cq_args, **self._cq_kwargs) if callable(key) else key)

    def default_unique_until(self) -> str:
        return str(self.options.get("unique_until", uniqueness.DEFAULT_UNTIL))

    def default_on_conflict(self) -> str:
        return str(self.options.get("on_conflict", uniqueness.OnConflict.KEEP.value))


class JobFunction(Generic[P, R]):
    """A function registered as a job (what ``@corequeue.job`` returns)."""

    def __init__(self, func: Callable[P, R], job_class: type[FunctionJob]) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.job_class = job_class
        self.name = registry.job_name(job_class)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here, now, as a plain call (no job is stored)."""
        return self.func(*args, **kwargs)

    def call(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """This function with these arguments as a job, for :func:`corequeue.enqueue_many`."""
        return self.job_class(*args, **kwargs)  # type: ignore[no-any-return]

    def run_in_worker(
        self,
        *args: Any,
        queue: str | None = None,
        delay: Delay | None = None,
        priority: int | None = None,
        retries: int | None = None,
        unique_key: str | None = None,
        timeout: float | None = None,
        connection: ConnectionLike | None = None,
        limit_key: str | None = None,
        concurrency_limit: int | None = None,
        rate_limit: str | None = None,
        unique_until: str | float | timedelta | None = None,
        on_conflict: str | None = None,
        **kwargs: Any,
    ) -> JobHandle:
        """Enqueue a call with ``args`` and ``kwargs`` for a worker; the options are those of
        ``Job.run_in_worker()`` (keyword-only). Returns its handle. Raises JobParamsError when
        an argument cannot be stored or does not match its annotation."""
        job: Job = self.job_class(*args, **kwargs)
        return job.run_in_worker(
            queue=queue,
            delay=delay,
            priority=priority,
            retries=retries,
            unique_key=unique_key,
            timeout=timeout,
            connection=connection,
            limit_key=limit_key,
            concurrency_limit=concurrency_limit,
            rate_limit=rate_limit,
            unique_until=unique_until,
            on_conflict=on_conflict,
        )

    def __repr__(self) -> str:
        return f"<job function {self.name}>"


_OPTIONS = (
    "queue",
    "priority",
    "retries",
    "timeout",
    "unique_key",
    "unique_until",
    "on_conflict",
    "max_worker_losses",
)


@overload
def job(func: Callable[P, R], /) -> JobFunction[P, R]: ...
@overload
def job(
    *,
    queue: str = ...,
    priority: int = ...,
    retries: int = ...,
    timeout: float | None = ...,
    unique_key: str | Callable[..., str] = ...,
    unique_until: str | float | timedelta = ...,
    on_conflict: str = ...,
    alias: str | None = ...,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = ...,
    discard_on: type[BaseException] | tuple[type[BaseException], ...] = ...,
    max_worker_losses: int | None = ...,
) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...
def job(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Register a function as a job: ``@corequeue.job`` or ``@corequeue.job(queue="mail",
    retries=3, discard_on=(ValueError,))``. The options are the class defaults' (``queue``,
    ``priority``, ``retries``, ``timeout``, ``unique_key``, ``unique_until``, ``on_conflict``),
    ``alias``, the retry policy (``retry_on``, ``discard_on``) and ``max_worker_losses``.

    Raises TypeError for an unknown option, what is not a module-level function, or a function
    with a parameter named like a ``run_in_worker()`` option; ValueError for a taken alias or
    a uniqueness policy that cannot be used."""
    unknown = set(options) - {*_OPTIONS, "alias", "retry_on", "discard_on"}
    if unknown:
        raise TypeError(
            f"@corequeue.job got unknown option(s) {', '.join(sorted(unknown))}: it takes "
            f"{', '.join((*_OPTIONS, 'alias', 'retry_on', 'discard_on'))}"
        )
    policy: dict[str, Any] = {
        k: check_exception_types(k, options[k]) for k in ("retry_on", "discard_on") if k in options
    }
    if "unique_until" in options:
        options["unique_until"] = uniqueness.parse_until(options["unique_until"])
    if "on_conflict" in options:
        options["on_conflict"] = uniqueness.parse_on_conflict(options["on_conflict"]).value

    def decorate(func: Callable[..., Any]) -> JobFunction[Any, Any]:
        if isinstance(func, JobFunction) or not inspect.isfunction(func):
            raise TypeError(f"@corequeue.job decorates functions (def or async def), not {func!r}")
        clash = sorted(RESERVED & set(inspect.signature(func).parameters))
        if clash:
            raise TypeError(
                f"job function {func.__qualname__} has a parameter named {clash[0]!r}, which "
                "is an option of run_in_worker(): rename the parameter (run_in_worker's "
                f"options are {', '.join(sorted(RESERVED))})"
            )
        attrs: dict[str, Any] = {
            "__module__": func.__module__,
            "__qualname__": func.__qualname__,
            "__doc__": func.__doc__,
            "function": staticmethod(func),
            "options": {k: options[k] for k in _OPTIONS if k in options},
            **policy,
        }
        if "max_worker_losses" in options:
            attrs["max_worker_losses"] = options["max_worker_losses"]
        cls = type(func.__name__, (FunctionJob,), attrs)
        registry.add(cls, alias=options.get("alias"))
        return JobFunction(func, cls)

    return decorate(func) if func is not None else decorate
