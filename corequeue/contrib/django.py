"""A backend for Django's task framework: ``django.tasks`` (Django 6) or the ``django_tasks``
backport (Django 5.2), whichever is installed (``pip install 'corequeue[django]'``).

.. code-block:: python

    TASKS = {
        "default": {
            "BACKEND": "corequeue.contrib.django.CorequeueBackend",
            "QUEUES": [],  # any queue name
            "OPTIONS": {"DATABASE": "default"},  # corequeue's tables live in this database
        }
    }

Each ``@task`` enqueues one corequeue job, :class:`DjangoTask`, whose parameters are the task's
module path and arguments; its queue, priority (Django's -100..100 are corequeue priorities as
they are: higher runs first) and ``run_after`` are the job's. A worker runs it with Django set
up: ``corequeue run --django-settings myproject.settings``. ``TaskResult`` objects read status,
return value, errors and workers from corequeue's rows.

Transactions: with ``OPTIONS["DATABASE"]`` naming the Django database that holds corequeue's
tables (the one corequeue's ``database_url`` points at), the job's INSERT runs on that Django
connection, so inside ``transaction.atomic()`` it commits or rolls back with the application's
writes. Without it, an enqueue inside ``transaction.atomic()`` waits for the commit
(``transaction.on_commit``) and is dropped on rollback; the result's ``id`` is set then.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from corequeue import runtime
from corequeue.core.errors import ConfigError, UnknownJobError
from corequeue.core.params import decode_params, decode_value
from corequeue.core.states import JobState
from corequeue.jobs import EnqueueOptions, Job, caller_source, enqueue, prepare, register_job

try:  # Django 6
    from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued

    TASKS_MODULE = "django.tasks"
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import TaskError
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued

    TASKS_MODULE = "django_tasks"

__all__ = ["TASKS_MODULE", "CorequeueBackend", "DjangoTask", "setup_django"]

#: The corequeue job name of every Django task.
JOB_NAME = "corequeue.contrib.django.DjangoTask"

STATUS = {
    JobState.REQUESTED: TaskResultStatus.READY,
    JobState.RUNNING: TaskResultStatus.RUNNING,
    JobState.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,
}


def setup_django(settings_module: str | None = None) -> None:
    """Set Django up in this process once (``django.setup()``), with ``settings_module`` as
    DJANGO_SETTINGS_MODULE when given. Raises ConfigError when no settings module is known."""
    from django.apps import apps

    if settings_module:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if apps.ready:
        return
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ConfigError(
            "Django is not set up: run the worker with --django-settings myproject.settings "
            "(or set DJANGO_SETTINGS_MODULE)"
        )
    import django

    django.setup()


@register_job
class DjangoTask(Job):
    """The corequeue job that runs one Django task: ``task`` is the task's module path
    (``myapp.tasks.send_mail``), ``args`` and ``kwargs`` its (JSON) arguments."""

    def __init__(
        self,
        task: str,
        args: Any = (),
        kwargs: Any = None,
        backend: str = "default",
        run_after: Any = None,
    ) -> None:
        self.task = task
        self.args = list(args)
        self.kwargs = dict(kwargs or {})
        self.backend = backend
        self.run_after = run_after

    def run(self) -> Any:
        setup_django()
        from django.db import close_old_connections

        task = _load_task(self.task)
        close_old_connections()
        try:
            if task.takes_context:
                value = task.call(_context(self.backend), *self.args, **self.kwargs)
            else:
                value = task.call(*self.args, **self.kwargs)
        finally:
            close_old_connections()
        # Django results are JSON: a value that is not fails the task, as in Django's backends.
        return json.loads(json.dumps(value))


def _load_task(path: str) -> Any:
    """The Task at ``path``, imported only from an installed Django app (a row cannot make a
    worker import arbitrary modules). Raises UnknownJobError otherwise."""
    from django.apps import apps
    from django.utils.module_loading import import_string

    if apps.get_containing_app_config(path.rpartition(".")[0]) is None:
        raise UnknownJobError(
            f"task {path!r} is not in an installed Django app: add its app to INSTALLED_APPS"
        )
    task = import_string(path)
    if not hasattr(task, "call") or not hasattr(task, "takes_context"):
        raise UnknownJobError(f"{path!r} is not a Django task: decorate it with @task")
    return task


def _context(backend: str) -> Any:
    """The TaskContext of the running task (its TaskResult, read from the job's row)."""
    import corequeue

    current = getattr(corequeue, "current_job", lambda: None)()
    if current is None:
        raise RuntimeError("a task that takes context runs only inside a corequeue job")
    return TaskContext(task_result=task_backends[backend].get_result(str(current.id)))


# ``corequeue run --django-settings MODULE`` sets this, so the worker and each of its children
# set Django up as they import this module, before any other import and any task.
if os.environ.get("COREQUEUE_DJANGO_SETTINGS"):
    setup_django(os.environ["COREQUEUE_DJANGO_SETTINGS"])


class CorequeueBackend(BaseTaskBackend):  # type: ignore[misc]
    """Django's ``TASKS`` backend that stores tasks as corequeue jobs.

    OPTIONS: ``DATABASE``, the Django database alias that holds corequeue's tables (enqueues
    then join that connection's transaction); ``ON_COMMIT_USING``, without ``DATABASE``, the
    alias whose ``transaction.atomic()`` an enqueue waits for (default "default").
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.database: str | None = self.options.get("DATABASE")
        self.on_commit_using: str = self.options.get("ON_COMMIT_USING", "default")

    def enqueue(self, task: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Enqueue ``task`` as a corequeue job; returns its TaskResult (status READY)."""
        self.validate_task(task)
        run_after = task.run_after.isoformat() if task.run_after is not None else None
        job = DjangoTask(task.module_path, list(args), dict(kwargs), self.alias, run_after)
        options = EnqueueOptions(queue=task.queue_name, priority=task.priority)
        if task.run_after is not None:
            options = EnqueueOptions(task.queue_name, task.run_after, task.priority)
        now = datetime.now(UTC)
        result = self._result(task, "", TaskResultStatus.READY, now, list(args), dict(kwargs))
        if self.database is not None:
            job_id = self._insert_shared(job, options, now)
            object.__setattr__(result, "id", str(job_id))
        else:
            self._enqueue_on_commit(job, options, result)
        task_enqueued.send(type(self), task_result=result)
        return result

    def _insert_shared(self, job: DjangoTask, options: EnqueueOptions, now: datetime) -> int:
        """Insert through the Django connection of ``DATABASE``, in its transaction."""
        from django.db import connections

        store = runtime.get_store()
        prepared = prepare(job, options, now=now, source=caller_source())
        for interceptor in reversed(runtime.interceptors()):  # the pytest plugin's
            intercepted = interceptor([prepared], None)
            if intercepted is not None:
                return intercepted[0].id
        connection = connections[self.database]
        connection.ensure_connection()
        cursor = connection.connection.cursor()
        try:
            return store.job_insert_dbapi(prepared.row, now=now, cursor=cursor)
        finally:
            cursor.close()

    def _enqueue_on_commit(self, job: DjangoTask, options: EnqueueOptions, result: Any) -> None:
        """Enqueue through corequeue's own store: now, or when the atomic block commits."""
        from django.db import transaction

        source = caller_source()

        def insert() -> None:
            (handle,) = enqueue([job], options, source=source)
            object.__setattr__(result, "id", str(handle.id))

        if transaction.get_connection(self.on_commit_using).in_atomic_block:
            object.__setattr__(result, "id", f"pending-{uuid.uuid4().hex}")
            transaction.on_commit(insert, using=self.on_commit_using)
        else:
            insert()

    def get_result(self, result_id: str) -> Any:
        """The TaskResult of job ``result_id``; TaskResultDoesNotExist when there is none."""
        store = runtime.get_store()
        try:
            record = store.job_get(int(result_id))
        except (TypeError, ValueError, OverflowError):
            record = None
        if record is None or record.name != JOB_NAME:
            raise TaskResultDoesNotExist(result_id)
        args, kwargs = decode_params(record.params)
        job = DjangoTask(*args, **kwargs)
        from django.utils.module_loading import import_string

        task = import_string(job.task).using(
            priority=record.priority, queue_name=record.queue, backend=self.alias
        )
        if job.run_after is not None:
            task = task.using(run_after=datetime.fromisoformat(job.run_after))
        status = STATUS.get(record.state, TaskResultStatus.READY)
        result = self._result(task, result_id, status, record.created_at, job.args, job.kwargs)
        attempts = store.attempt_list(record.id)
        errors = [
            TaskError(
                exception_class_path=_class_path(a.error_type or "Exception"),
                traceback=a.traceback or a.error_message or "",
            )
            for a in attempts
            if a.error_type is not None or a.traceback is not None
        ]
        started = [a.started_at for a in attempts if a.started_at is not None]
        fields: dict[str, Any] = {
            "started_at": record.started_at,
            "finished_at": record.finished_at if status in _FINISHED else None,
            "last_attempted_at": max(started) if started else None,
            "errors": errors,
            "worker_ids": [a.worker_id or "" for a in attempts],
        }
        if record.state is JobState.RUNNING:
            fields["worker_ids"] = [*fields["worker_ids"], record.worker_id or ""]
        for name, value in fields.items():
            object.__setattr__(result, name, value)
        if status == TaskResultStatus.SUCCESSFUL and record.result is not None:
            object.__setattr__(result, "_return_value", decode_value(record.result))
        return result

    def _result(
        self,
        task: Any,
        result_id: str,
        status: Any,
        enqueued_at: datetime,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> Any:
        return TaskResult(
            task=task,
            id=result_id,
            status=status,
            enqueued_at=enqueued_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )

    def check(self, **kwargs: Any) -> Iterable[Any]:
        return []


_FINISHED = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)


def _class_path(error_type: str) -> str:
    """An exception's import path as Django's TaskError wants it (builtins spelled out)."""
    return error_type if "." in error_type else f"builtins.{error_type}"
