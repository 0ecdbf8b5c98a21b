"""``enqueued_jobs``: what a test enqueued, and assertions about it.

Two sources, one interface. In capture mode (the default) enqueues are intercepted: nothing
is written and nothing runs, and every captured job is waiting by definition. Against a real
database (when the test also uses ``corequeue_store`` or ``corequeue_worker``) enqueues go to
the database and the assertions read the jobs that are still ``requested`` there: a job that
already ran, failed or was cancelled never matches.

A ``connection=`` enqueue (a SQLAlchemy Connection or Session) is captured when that
transaction commits (its outermost commit) and dropped if it rolls back. Captured parameters
are kept as given (after the conversions of typed parameters): they are checked by encoding,
as at enqueue, but not decoded again, so an ORM instance inserted in the caller's still-open
transaction is captured as it is.

Matching: ``assert_enqueued(SendWelcome, 7, queue="mail")`` matches a waiting SendWelcome
whose constructor arguments include ``user_id=7`` (positional and keyword arguments are bound
to the constructor's signature, so ``SendWelcome(7)`` and ``SendWelcome(user_id=7)`` are the
same job). Arguments left out are not compared. ORM instances compare by model and primary
key (the same row loaded twice is the same argument). ``queue`` and ``priority`` are enqueue
options, not job arguments.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from corequeue import hooks, registry, runtime
from corequeue.core import typed, uniqueness
from corequeue.core.params import decode_params
from corequeue.core.states import JobState
from corequeue.functions import JobFunction
from corequeue.jobs import Job, JobHandle, PreparedJob
from corequeue.store import orm
from corequeue.store.commit import after_commit
from corequeue.store.queries import ConnectionLike, Store
from corequeue.store.records import JobFilter, NewJob

_ids = itertools.count(1)
_MISSING = object()


@dataclass(frozen=True)
class EnqueuedJob:
    """One waiting job, with its parameters decoded as a worker would decode them."""

    id: int
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    run_at: datetime
    max_attempts: int
    unique_key: str
    timeout: float | None
    source: str = ""  # where it was enqueued (file:line)

    @property
    def job_class(self) -> type[Job]:
        return registry.resolve(self.name)

    @property
    def arguments(self) -> dict[str, Any]:
        """The constructor arguments by parameter name (positional ones bound to names)."""
        return _bind(self.job_class, self.args, self.kwargs)

    def build(self) -> Job:
        """A new instance of the job from its decoded parameters (call ``.run()`` to run it)."""
        job: Job = self.job_class(*self.args, **self.kwargs)
        return job

    def describe(self) -> str:
        parts = [show(a) for a in self.args] + [f"{k}={show(v)}" for k, v in self.kwargs.items()]
        options = f"queue={self.queue!r} priority={self.priority}"
        if self.unique_key:
            options += f" unique_key={self.unique_key!r}"
        return f"{self.name}({', '.join(parts)}) {options} run_at={self.run_at.isoformat()}"

    def __str__(self) -> str:
        return self.describe()


class CapturedHandle(JobHandle):
    """The handle of a captured job: it waits forever, because nothing runs it."""

    def refresh(self) -> CapturedHandle:
        return self

    def wait(self, timeout: float | None = None, *, poll: float = 0.02) -> Any:
        raise AssertionError(
            f"job {self.id} was captured by the enqueued_jobs fixture and never runs: use "
            "run_jobs_inline to run jobs at once, or corequeue_worker.drain() with a database"
        )


#: What the assertions take: a Job class, or a function job (``@corequeue.job``).
JobKind = type[Job] | JobFunction[Any, Any]


def _job_class(kind: JobKind | None) -> type[Job] | None:
    return kind.job_class if isinstance(kind, JobFunction) else kind


def _bind(cls: type[Job], args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    func, skip_first = cls.parameters_of()  # a class's __init__, or a job function
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return {**{f"args[{i}]": v for i, v in enumerate(args)}, **kwargs}
    try:
        bound = signature.bind_partial(*[None] * skip_first, *args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"arguments do not fit {cls.__qualname__}{signature}: {exc}") from None
    out = dict(bound.arguments)
    if skip_first:
        out.pop(next(iter(signature.parameters)), None)  # self
    for name, param in signature.parameters.items():
        if param.kind is param.VAR_KEYWORD and name in out:
            out.update(out.pop(name))
    return out


@dataclass(frozen=True)
class _Query:
    cls: type[Job] | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str | None
    priority: int | None

    def describe(self) -> str:
        if self.cls is None:
            return "any job"
        parts = [show(a) for a in self.args] + [f"{k}={show(v)}" for k, v in self.kwargs.items()]
        text = registry.job_name(self.cls)
        if parts:
            text += f"({', '.join(parts)})"
        if self.queue is not None:
            text += f" queue={self.queue!r}"
        if self.priority is not None:
            text += f" priority={self.priority}"
        return text

    def matches(self, job: EnqueuedJob) -> bool:
        if self.cls is not None and registry.canonical_name(job.name) != registry.job_name(
            self.cls
        ):
            return False
        if self.queue is not None and job.queue != self.queue:
            return False
        if self.priority is not None and job.priority != self.priority:
            return False
        if self.cls is None or not (self.args or self.kwargs):
            return True
        wanted = _bind(self.cls, self.args, self.kwargs)
        try:
            actual = job.arguments
        except TypeError:
            return False
        return all(same(actual.get(k, _MISSING), v) for k, v in wanted.items())

    def differences(self, job: EnqueuedJob) -> str | None:
        """What differs between this query and ``job`` of the same job name, argument by
        argument (None for another job, or arguments that do not fit)."""
        if self.cls is None or registry.canonical_name(job.name) != registry.job_name(self.cls):
            return None
        try:
            wanted, actual = _bind(self.cls, self.args, self.kwargs), job.arguments
        except TypeError:
            return None
        out = [
            f"{k}: expected {show(v)}, got {show(actual.get(k, _MISSING))}"
            for k, v in wanted.items()
            if not same(actual.get(k, _MISSING), v)
        ]
        for option in ("queue", "priority"):
            expected = getattr(self, option)
            if expected is not None and expected != getattr(job, option):
                out.append(f"{option}: expected {expected!r}, got {getattr(job, option)!r}")
        return "; ".join(out) or None


def same(actual: Any, expected: Any) -> bool:
    """Whether an enqueued argument matches an expected one: ORM instances by model and
    primary key, lists, tuples and dicts item by item, anything else by ``==``."""
    ids = orm.identity(actual), orm.identity(expected)
    if ids[0] is not None or ids[1] is not None:
        if ids[0] is None or ids[1] is None or ids[0][1] is None:
            return actual is expected
        return ids[0] == ids[1]
    if isinstance(actual, (list, tuple)) and isinstance(expected, (list, tuple)):
        return len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            same(actual[k], expected[k]) for k in actual
        )
    return bool(actual == expected)


def show(value: Any) -> str:
    """An argument as the messages print it: an ORM instance as ``Order#12``."""
    if value is _MISSING:
        return "(missing)"
    identity = orm.identity(value)
    if identity is not None:
        key = "?" if identity[1] is None else ",".join(repr(k) for k in identity[1])
        return f"{identity[0].__name__}#{key}"
    if isinstance(value, list):
        return "[" + ", ".join(map(show, value)) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(show, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {show(v)}" for k, v in value.items()) + "}"
    return repr(value)


class EnqueuedJobs:
    """Jobs enqueued during a test that are still waiting, with assertions about them.

    Without a ``store``, :meth:`start` intercepts enqueues (capture mode). With one, the
    assertions read the ``requested`` jobs in that database.
    """

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self._captured: list[EnqueuedJob] = []
        self._remove: Callable[[], None] | None = None

    @property
    def capturing(self) -> bool:
        return self.store is None

    def start(self) -> None:
        if self.store is None and self._remove is None:
            self._remove = runtime.add_interceptor(self._intercept)

    def stop(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None

    def __enter__(self) -> EnqueuedJobs:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- sources ----------------------------------------------------------------------------

    def _intercept(
        self, prepared: Sequence[PreparedJob], connection: ConnectionLike | None
    ) -> list[JobHandle]:
        handles: list[JobHandle] = []
        new: list[EnqueuedJob] = []
        replaced: dict[int, EnqueuedJob] = {}
        for p in prepared:
            existing = self._holder(p.row, new)
            if existing is not None:  # as the database would: captured jobs wait forever
                resolution = uniqueness.resolve(p.row.on_conflict, JobState.REQUESTED)
                if resolution is uniqueness.Resolution.RAISE:
                    raise uniqueness.duplicate(p.row.name, p.row.unique_key, existing.id)
                if resolution is uniqueness.Resolution.REPLACE:  # the arguments and run time
                    replaced[existing.id] = self._as_given(existing.id, p)
                    new = [replaced.get(j.id, j) for j in new]
                handles.append(
                    CapturedHandle(existing.id, state=JobState.REQUESTED, deduplicated=True)
                )
                continue
            job = self._as_given(next(_ids), p)
            new.append(job)
            handles.append(CapturedHandle(job.id, state=JobState.REQUESTED))
        after_commit(connection, lambda: self._record(new, replaced))
        return handles

    def _record(self, new: Sequence[EnqueuedJob], replaced: dict[int, EnqueuedJob]) -> None:
        """The enqueue is committed: keep its jobs and announce them (``job_enqueued``)."""
        self._captured = [replaced.get(j.id, j) for j in self._captured]
        self._captured += new
        for job in new:
            hooks.fire(hooks.enqueued(job.id, job, None))  # (no enqueue time in a capture)

    def _holder(self, row: NewJob, new: Sequence[EnqueuedJob]) -> EnqueuedJob | None:
        if not row.unique_key:
            return None
        for job in [*self._captured, *new]:
            if job.name == row.name and job.unique_key == row.unique_key:
                return job
        return None

    @staticmethod
    def _as_given(job_id: int, prepared: PreparedJob) -> EnqueuedJob:
        # As given, after the typed conversions prepare() made (it encoded them already).
        job, row = prepared.job, prepared.row
        func, skip_first = type(job).parameters_of()
        args, kwargs = typed.bind_and_convert(
            func, job._cq_args, job._cq_kwargs, job=row.name, skip_first=skip_first
        )
        return EnqueuedJob(
            id=job_id,
            name=row.name,
            args=args,
            kwargs=kwargs,
            queue=row.queue,
            priority=row.priority,
            run_at=row.run_at,
            max_attempts=row.max_attempts,
            unique_key=row.unique_key,
            timeout=row.timeout,
            source=row.source,
        )

    def _waiting(self) -> list[EnqueuedJob]:
        if self.store is None:
            return list(self._captured)
        out: list[EnqueuedJob] = []
        before: int | None = None
        while True:
            page = self.store.job_list(
                JobFilter(states=(JobState.REQUESTED,)), limit=500, before_id=before
            )
            for record in page:
                args, kwargs = decode_params(record.params, codecs=runtime.codecs())
                out.append(
                    EnqueuedJob(
                        id=record.id,
                        name=record.name,
                        args=args,
                        kwargs=kwargs,
                        queue=record.queue,
                        priority=record.priority,
                        run_at=record.run_at,
                        max_attempts=record.max_attempts,
                        unique_key=record.unique_key,
                        timeout=record.timeout,
                    )
                )
            if len(page) < 500:
                break
            before = page[-1].id
        out.sort(key=lambda j: j.id)
        return out

    # -- reading and asserting --------------------------------------------------------------

    def all(self, job_class: JobKind | None = None) -> list[EnqueuedJob]:
        """The waiting jobs (of ``job_class``, when given), oldest first."""
        query = _Query(_job_class(job_class), (), {}, None, None)
        return [j for j in self._waiting() if query.matches(j)]

    def clear(self) -> None:
        """Forget the captured jobs (capture mode only)."""
        if self.store is not None:
            raise RuntimeError(
                "enqueued_jobs.clear() works in capture mode only: with a database, delete or "
                "run the jobs instead (corequeue_worker.drain())"
            )
        self._captured.clear()

    def find(
        self,
        job_class: JobKind | None = None,
        *args: Any,
        queue: str | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> list[EnqueuedJob]:
        """The waiting jobs that match, oldest first."""
        query = _Query(_job_class(job_class), args, kwargs, queue, priority)
        return [j for j in self._waiting() if query.matches(j)]

    def assert_enqueued(
        self,
        job_class: JobKind | None = None,
        *args: Any,
        queue: str | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> EnqueuedJob:
        """Assert that a matching job is waiting. Returns the first match (oldest).

        Raises AssertionError listing every waiting job when none matches.
        """
        __tracebackhide__ = True
        query = _Query(_job_class(job_class), args, kwargs, queue, priority)
        waiting = self._waiting()
        found = [j for j in waiting if query.matches(j)]
        if not found:
            raise AssertionError(
                f"expected {query.describe()} to be enqueued and waiting, but it is not.\n"
                + _listing(waiting, query=query)
            )
        return found[0]

    def refute_enqueued(
        self,
        job_class: JobKind | None = None,
        *args: Any,
        queue: str | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Assert that no matching job is waiting. Raises AssertionError listing the matches."""
        __tracebackhide__ = True
        query = _Query(_job_class(job_class), args, kwargs, queue, priority)
        found = [j for j in self._waiting() if query.matches(j)]
        if found:
            raise AssertionError(
                f"expected no {query.describe()} to be enqueued, but found {len(found)}:\n"
                + "\n".join(f"  {j}" for j in found)
            )

    @contextlib.contextmanager
    def expect(
        self,
        job_class: JobKind | None = None,
        *args: Any,
        queue: str | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> Iterator[None]:
        """Assert that the block enqueues a matching job (at least one, still waiting at the
        end of the block). Raises AssertionError listing what the block enqueued."""
        __tracebackhide__ = True
        query = _Query(_job_class(job_class), args, kwargs, queue, priority)
        seen = {j.id for j in self._waiting()}
        yield
        new = [j for j in self._waiting() if j.id not in seen]
        if not any(query.matches(j) for j in new):
            raise AssertionError(
                f"expected the block to enqueue {query.describe()}, but it did not.\n"
                + _listing(new, what="The block enqueued")
            )

    def __len__(self) -> int:
        return len(self._waiting())

    def __iter__(self) -> Iterator[EnqueuedJob]:
        return iter(self._waiting())

    def __repr__(self) -> str:
        mode = "capture" if self.store is None else "database"
        return f"<EnqueuedJobs {mode}: {len(self)} waiting>"


def _listing(
    jobs: Sequence[EnqueuedJob], *, what: str = "Enqueued and waiting", query: _Query | None = None
) -> str:
    if not jobs:
        return f"{what}: nothing."
    lines = [f"{what} ({len(jobs)}):"]
    for job in jobs:
        lines.append(f"  {job}")
        differs = query.differences(job) if query is not None else None
        if differs:
            lines.append(f"    differs: {differs}")
    return "\n".join(lines)
