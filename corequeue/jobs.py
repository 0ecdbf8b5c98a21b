"""The public job API: ``Job``, ``DeferJob``, ``register_job``, enqueueing, and the handle
``run_in_worker()`` returns.

Enqueueing lives here, beside the class whose ``run_in_worker()`` calls it: per-call options
travel as one :class:`EnqueueOptions`, and the class defaults (``default_queue()``, ...) are
applied in one place, :func:`apply_defaults`.
"""

from __future__ import annotations

import inspect
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from corequeue import hooks, registry, runtime, tracing
from corequeue.core import delays, limits, policy, typed, uniqueness
from corequeue.core.delays import Delay
from corequeue.core.display import missing_job
from corequeue.core.errors import (
    JobFailed,
    JobNotFound,
    JobParamsError,
    JobTimeout,
    UnknownJobError,
)
from corequeue.core.params import decode_value, encode_params
from corequeue.core.retry import exponential_backoff
from corequeue.core.states import JobState
from corequeue.store.commit import after_commit
from corequeue.store.records import NewJob

if TYPE_CHECKING:
    from corequeue.store.queries import ConnectionLike, Store
    from corequeue.store.records import JobRecord


class DeferJob(Exception):
    """Raise inside ``run()`` to put the job back to wait for ``delay``.

    With ``increment_retries=True`` the deferral uses up an attempt, and the job fails once
    its attempts run out; otherwise it does not count.
    """

    def __init__(self, delay: Delay = 0, *, increment_retries: bool = False) -> None:
        try:  # the enqueue rule (corequeue.core.delays), checked where the job raises this
            delays.run_at(delay, datetime.now(UTC))
        except JobParamsError as exc:
            raise ValueError(f"DeferJob: {exc}") from None
        self.delay = delay
        self.increment_retries = increment_retries
        super().__init__(f"deferred for {delay!r}")


class Job:
    """Base class for background jobs.

    The constructor's arguments are the job's stored parameters; ``run()`` does the work and
    its return value is stored as the job's result. Override the ``default_*`` class methods
    for per-class defaults.
    """

    _cq_args: tuple[Any, ...]
    _cq_kwargs: dict[str, Any]

    #: Attempts lost in a row with their worker (the worker killed or cut off while running
    #: this job) before the job fails as a crash loop; None: the ``max_worker_losses`` setting.
    max_worker_losses: int | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__new__(cls)
        obj._cq_args = args
        obj._cq_kwargs = kwargs
        return obj

    def run(self) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define run()")

    # -- the retry policy (corequeue.core.policy) --------------------------------------------

    #: Exceptions that are retried (while attempts are left); empty: any exception is.
    retry_on: tuple[type[BaseException], ...] = ()
    #: Exceptions that fail the job at once, whatever attempts are left.
    discard_on: tuple[type[BaseException], ...] = ()

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether attempt ``attempt`` (1-based), which raised ``exc``, may be retried (while
        attempts are left). Override to decide; by default ``discard_on``, then ``retry_on``."""
        return policy.decide(type(exc), retry_on=self.retry_on, discard_on=self.discard_on).retry

    @classmethod
    def parameters_of(cls) -> tuple[Callable[..., Any], bool]:
        """The callable whose signature the job's parameters follow, and whether its first
        parameter is ``self`` (checked and converted at enqueue: corequeue.core.typed)."""
        return cls.__init__, True

    # -- class-level defaults ---------------------------------------------------------------

    def default_queue(self) -> str:
        return "default"

    def default_priority(self) -> int:
        return 0

    def default_retries(self) -> int:
        return 0

    def default_timeout(self) -> float | None:
        return None

    #: Flow control (corequeue.core.limits): at most this many of this job running at once
    #: across every worker, per limit key (``default_limit_key()``); None: no limit.
    concurrency_limit: int | None = None
    #: At most this many starts per period ("10/s", "100/m"), per limit key; None: no limit.
    rate_limit: str | None = None

    def default_limit_key(self) -> str:
        """The key this job's limits count by (e.g. "tenant:42"); "": one count for the class."""
        return ""

    def default_unique_key(self) -> str:
        return ""

    def default_unique_until(self) -> str:
        """How long the unique key holds: "started", "finished" or a period such as "10m"
        (corequeue.core.uniqueness)."""
        return uniqueness.DEFAULT_UNTIL

    def default_on_conflict(self) -> str:
        """What an enqueue whose key is held does: "keep", "replace" or "raise"."""
        return uniqueness.OnConflict.KEEP.value

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt ``attempt`` (1-based):
        exponential with jitter by default."""
        return exponential_backoff(attempt, random.random())

    # -- enqueue ----------------------------------------------------------------------------

    def run_in_worker(
        self,
        *,
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
    ) -> JobHandle:
        """Enqueue this job for a worker. Returns its handle.

        With ``connection`` (a SQLAlchemy Connection or Session) the job is inserted in the
        caller's transaction: it exists only if that transaction commits. A ``unique_key``
        held by a job of the same class within its ``unique_until`` returns that job's handle
        instead (``handle.deduplicated``), after giving a waiting one this job's arguments and
        run time with ``on_conflict="replace"``; ``on_conflict="raise"`` raises DuplicateJob.
        Raises JobParamsError naming a parameter or option that cannot be stored.
        """
        options = EnqueueOptions(
            queue,
            delay,
            priority,
            retries,
            unique_key,
            timeout,
            limit_key=limit_key,
            concurrency_limit=concurrency_limit,
            rate_limit=rate_limit,
            unique_until=unique_until,
            on_conflict=on_conflict,
        )
        (handle,) = enqueue([self], options, connection=connection, source=caller_source())
        return handle

    def __repr__(self) -> str:
        parts = [repr(a) for a in self._cq_args]
        parts += [f"{k}={v!r}" for k, v in self._cq_kwargs.items()]
        return f"{type(self).__qualname__}({', '.join(parts)})"


J = TypeVar("J", bound=type[Job])


@overload
def register_job(cls: J, /) -> J: ...
@overload
def register_job(*, alias: str | None = None) -> Callable[[J], J]: ...
def register_job(cls: J | None = None, /, *, alias: str | None = None) -> J | Callable[[J], J]:
    """Register a Job subclass so workers can run it: ``@register_job`` or
    ``@register_job(alias="welcome")``. Returns the class unchanged.

    Raises TypeError for what is not a Job subclass or cannot be imported by a worker,
    ValueError for an alias that already names another job."""

    def decorate(cls: J) -> J:
        if not (isinstance(cls, type) and issubclass(cls, Job)):
            raise TypeError(f"@register_job decorates Job subclasses, not {cls!r}")
        registry.add(cls, alias=alias)
        return cls

    return decorate(cls) if cls is not None else decorate


def arg_names(job: Job) -> tuple[str, ...]:
    """Names of the positional constructor arguments, for error messages."""
    cls = type(job)
    names = _ARG_NAMES.get(cls)
    if names is None:
        func, skip_first = cls.parameters_of()
        try:
            params = list(inspect.signature(func).parameters.values())[skip_first:]
        except (TypeError, ValueError):
            params = []
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        names = _ARG_NAMES[cls] = tuple(p.name for p in params if p.kind in kinds)
    return names


_ARG_NAMES: dict[type[Job], tuple[str, ...]] = {}


def caller_source() -> str:
    """``file:line`` of the first frame outside corequeue (where the job was enqueued)."""
    frame = sys._getframe(1)
    package = __name__.rpartition(".")[0]
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != package and not module.startswith(package + "."):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return ""


class JobHandle:
    """A stored job: its ``id``, its last known ``state``, ``refresh()`` and ``wait()``.

    ``deduplicated`` is True when the enqueue that made this handle inserted nothing because
    another job held its unique key: the handle is that job's."""

    def __init__(
        self,
        id: int,
        *,
        store: Store | None = None,
        state: JobState | None = None,
        deduplicated: bool = False,
    ):
        self.id = id
        self._store = store
        self.state: JobState = state or JobState.REQUESTED
        self.record: JobRecord | None = None
        self.deduplicated = deduplicated

    def _get_store(self) -> Store:
        if self._store is None:
            self._store = runtime.get_store()
        return self._store

    def refresh(self) -> JobHandle:
        """Read the job again. Returns self; raises JobNotFound when there is no such job
        (deleted, pruned, or its enqueue rolled back)."""
        record = self._get_store().job_get(self.id)
        if record is None:
            raise JobNotFound(missing_job(self.id))
        self.record = record
        self.state = record.state
        return self

    @property
    def result(self) -> Any:
        """The stored result of a succeeded job (None before)."""
        if self.record is None or self.record.result is None:
            return None
        return decode_value(self.record.result)

    def wait(self, timeout: float | None = None, *, poll: float = 0.02) -> Any:
        """Wait until the job finishes and return its result.

        Raises JobTimeout after ``timeout`` seconds, JobFailed when the job failed or was
        cancelled (the message carries its last error).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll
        while True:
            self.refresh()
            assert self.record is not None
            if self.state is JobState.SUCCEEDED:
                return self.result
            if self.state in (JobState.FAILED, JobState.CANCELLED):
                raise JobFailed(
                    f"job {self.id} ({self.record.name}) {self.state.value}: {self.record.error}"
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(f"job {self.id} is still {self.state.value} after {timeout:g}s")
            sleep = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(sleep, 0.0))
            interval = min(interval * 1.5, 0.25)

    def __repr__(self) -> str:
        return f"<JobHandle id={self.id} state={self.state.value}>"


#: The jobs table's integer columns (priority, max_attempts) are 32-bit.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
#: The longest job timeout accepted, in seconds (about 31 years).
MAX_TIMEOUT = 1e9


def apply_defaults(job: Job, options: EnqueueOptions) -> tuple[str, int, int, str, float | None]:
    """(queue, priority, max_attempts, unique_key, timeout) for ``job``: each option left None
    takes the class default. Raises JobParamsError naming a value that cannot be stored."""
    q = job.default_queue() if options.queue is None else options.queue
    p = job.default_priority() if options.priority is None else options.priority
    r = job.default_retries() if options.retries is None else options.retries
    u = job.default_unique_key() if options.unique_key is None else options.unique_key
    t = job.default_timeout() if options.timeout is None else options.timeout
    name = type(job).__qualname__
    if not isinstance(q, str) or not q or len(q) > 100 or _bad_text(q):
        raise JobParamsError(
            f"{name}: queue={q!r:.120} must be a non-empty string (at most 100 chars, "
            "no NUL or lone surrogates)"
        )
    if not _is_int(p) or not INT_MIN <= p <= INT_MAX:
        raise JobParamsError(
            f"{name}: priority={p!r:.120} must be an integer from {INT_MIN} to {INT_MAX}"
        )
    if not _is_int(r) or not 0 <= r < INT_MAX:
        raise JobParamsError(
            f"{name}: retries={r!r:.120} must be an integer from 0 to {INT_MAX - 1}"
        )
    if not isinstance(u, str) or len(u) > 255 or _bad_text(u):
        raise JobParamsError(
            f"{name}: unique_key={u!r:.120} must be a string (at most 255 chars, no NUL or "
            "lone surrogates)"
        )
    if t is not None and (
        not isinstance(t, (int, float))
        or isinstance(t, bool)
        or not 0 < t <= MAX_TIMEOUT  # also false for NaN
    ):
        raise JobParamsError(
            f"{name}: timeout={t!r:.120} must be a number of seconds > 0 (at most {MAX_TIMEOUT:g})"
        )
    return q, p, r + 1, u, float(t) if t is not None else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad_text(text: str) -> bool:
    """Whether ``text`` holds what a database column cannot (NUL) or what is not text at all
    (a lone surrogate)."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def handles(ids: Sequence[int], store: Store) -> list[JobHandle]:
    return [JobHandle(i, store=store) for i in ids]


# -- enqueueing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """The per-call options of ``run_in_worker()`` and ``enqueue_many()``; None takes the job
    class's default (:func:`apply_defaults`). ``delay`` follows :mod:`corequeue.core.delays`."""

    queue: str | None = None
    delay: Delay | None = None
    priority: int | None = None
    retries: int | None = None
    unique_key: str | None = None
    timeout: float | None = None
    #: Flow control: the key the job's limits count by, and limits in place of the class's.
    limit_key: str | None = None
    concurrency_limit: int | None = None
    rate_limit: str | None = None
    #: Uniqueness (corequeue.core.uniqueness): how long the key holds, and what a held key does.
    unique_until: str | float | timedelta | None = None
    on_conflict: str | None = None


def unique_fields(job: Job, options: EnqueueOptions) -> dict[str, Any]:
    """The NewJob fields of ``job``'s uniqueness policy (its class's where ``options`` has
    None). Raises JobParamsError for a policy that cannot be used."""
    until = job.default_unique_until() if options.unique_until is None else options.unique_until
    conflict = job.default_on_conflict() if options.on_conflict is None else options.on_conflict
    try:
        return {
            "unique_until": uniqueness.parse_until(until),
            "on_conflict": uniqueness.parse_on_conflict(conflict),
        }
    except uniqueness.UniquePolicyError as exc:
        raise JobParamsError(f"{type(job).__qualname__}: {exc}") from None


def limit_fields(job: Job, options: EnqueueOptions, name: str) -> dict[str, Any]:
    """The NewJob fields of ``job``'s limits (none when it has none). Raises JobParamsError."""
    concurrency = (
        job.concurrency_limit if options.concurrency_limit is None else options.concurrency_limit
    )
    rate_text = job.rate_limit if options.rate_limit is None else options.rate_limit
    if concurrency is None and rate_text is None:
        return {}
    key = job.default_limit_key() if options.limit_key is None else options.limit_key
    try:
        if not isinstance(key, str) or len(key) > 255 or _bad_text(key):
            raise limits.LimitError(f"limit_key={key!r:.80} must be a string of at most 255")
        out: dict[str, Any] = {}
        if concurrency is not None:
            out["concurrency_limit"] = limits.check_concurrency(concurrency)
            out["concurrency_key"] = limits.job_key(name, key)
        if rate_text is not None:
            rate = limits.parse_rate(rate_text)
            out["rate_limit"] = (rate.count, rate.period)
            out["rate_key"] = limits.job_key(name, key)
    except limits.LimitError as exc:
        raise JobParamsError(f"{type(job).__qualname__}: {exc}") from None
    return out


@dataclass(frozen=True, slots=True)
class PreparedJob:
    """A job ready to insert: the Job instance and its row."""

    job: Job
    row: NewJob


def prepare(job: Job, options: EnqueueOptions, *, now: datetime, source: str) -> PreparedJob:
    """Validate and encode one job for insertion. Raises JobParamsError, UnknownJobError."""
    cls = type(job)
    if not isinstance(job, Job):
        raise TypeError(f"expected a Job instance, got {job!r}")
    if not registry.is_registered(cls):
        raise UnknownJobError(
            f"{registry.job_name(cls)} is not registered: decorate the class with "
            "@register_job so workers can find it"
        )
    q, p, max_attempts, u, t = apply_defaults(job, options)
    codecs = runtime.codecs()
    func, skip_first = cls.parameters_of()
    args, kwargs = typed.bind_and_convert(
        func, job._cq_args, job._cq_kwargs, job=registry.job_name(cls), skip_first=skip_first
    )
    params = encode_params(args, kwargs, arg_names=arg_names(job), codecs=codecs)
    row = NewJob(
        name=registry.job_name(cls),
        params=params,
        queue=q,
        priority=p,
        run_at=delays.run_at(options.delay, now),
        max_attempts=max_attempts,
        timeout=t,
        unique_key=u,
        source=source,
        **limit_fields(job, options, registry.job_name(cls)),
        **unique_fields(job, options),
    )
    return PreparedJob(job, row)


def enqueue(
    jobs: Iterable[Job],
    options: EnqueueOptions,
    *,
    connection: ConnectionLike | None = None,
    source: str,
) -> list[JobHandle]:
    """Enqueue ``jobs`` with ``options`` in one transaction (the caller's, with ``connection``),
    unless an interceptor (the pytest plugin) takes them. Returns the handles in order. When
    tracing (:mod:`corequeue.tracing`), a producer span covers it and the rows carry its
    context."""
    now = datetime.now(UTC)
    prepared = [prepare(job, options, now=now, source=source) for job in jobs]
    if not tracing.enabled():
        return _insert(prepared, connection, now)
    with tracing.enqueueing([p.row for p in prepared]) as span:
        traced = [PreparedJob(p.job, row) for p, row in zip(prepared, span.rows, strict=True)]
        handles = _insert(traced, connection, now)
        span.inserted([h.id for h in handles])
    return handles


def _insert(
    prepared: list[PreparedJob], connection: ConnectionLike | None, now: datetime
) -> list[JobHandle]:
    for interceptor in reversed(runtime.interceptors()):
        intercepted = interceptor(prepared, connection)
        if intercepted is not None:
            return intercepted
    store = runtime.get_store()
    inserted = store.job_insert_many([p.row for p in prepared], now=now, connection=connection)
    handles = [JobHandle(i.id, store=store, deduplicated=not i.inserted) for i in inserted]
    if hooks.active("job_enqueued"):
        events = [
            hooks.enqueued(i.id, p.row, now)
            for i, p in zip(inserted, prepared, strict=True)
            if i.inserted  # a unique key's existing job was enqueued before
        ]
        after_commit(connection, lambda: hooks.fire_all(events))
    return handles


def enqueue_many(
    jobs: Iterable[Job],
    *,
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
    _source: str | None = None,
) -> list[JobHandle]:
    """Enqueue many jobs in one transaction (multi-row inserts). Options left None take each
    job's class defaults; each job's unique key and policy apply to it alone (a key held by a
    job earlier in the same batch counts). Returns the handles in order; nothing is inserted
    if any job's parameters cannot be stored (JobParamsError names it) or one job's key is
    held with ``on_conflict="raise"`` (DuplicateJob)."""
    options = EnqueueOptions(
        queue,
        delay,
        priority,
        retries,
        unique_key,
        timeout,
        limit_key=limit_key,
        concurrency_limit=concurrency_limit,
        rate_limit=rate_limit,
        unique_until=unique_until,
        on_conflict=on_conflict,
    )
    source = _source if _source is not None else caller_source()
    return enqueue(jobs, options, connection=connection, source=source)
