"""The project's tasks on corequeue: enqueue, commit and rollback with the application's writes,
a real worker (``corequeue run --django-settings``) running them, and reading their results."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test import Client, override_settings
from django.utils import timezone
from orders.models import Order
from orders.tasks import refuse, send_confirmation, which_attempt

import corequeue
from corequeue.contrib.django import TASKS_MODULE, CorequeueBackend

if TASKS_MODULE == "django.tasks":
    from django.tasks import TaskResultStatus, task_backends
    from django.tasks.exceptions import TaskResultDoesNotExist
else:
    from django_tasks import TaskResultStatus, task_backends
    from django_tasks.exceptions import TaskResultDoesNotExist

PROJECT = Path(__file__).resolve().parent.parent
WORKER = [sys.executable, "-m", "corequeue", "run", "--django-settings", "mysite.settings"]


def run_worker() -> str:
    """A real worker, as in production, until nothing is ready; returns its log."""
    done = subprocess.run(
        [*WORKER, "--burst", "--max-processes", "1"],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def job_count() -> int:
    return sum(n for _, _, n in corequeue.get_store().job_count_many())


def jobs_seen_by_django() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM corequeue_jobs")
        return int(cursor.fetchone()[0])


def test_the_backend_is_corequeue() -> None:
    assert isinstance(task_backends["default"], CorequeueBackend)


def test_enqueue_stores_a_ready_job_with_its_queue_and_priority() -> None:
    result = send_confirmation.enqueue(41)
    assert result.status == TaskResultStatus.READY
    record = corequeue.get_store().job_get(int(result.id))
    assert record is not None
    assert (record.name, record.queue, record.priority) == (
        "corequeue.contrib.django.DjangoTask",
        "mail",
        10,
    )
    again = send_confirmation.get_result(result.id)
    assert again == result
    assert again.args == [41] and again.task == send_confirmation


def test_an_enqueue_in_a_committed_transaction_exists_with_the_order() -> None:
    response = Client().post("/orders/", {"email": "ada@example.com"})
    assert response.status_code == 200
    body = response.json()
    assert Order.objects.filter(pk=body["order"]).exists()
    assert send_confirmation.get_result(body["task"]).status == TaskResultStatus.READY


def test_a_rolled_back_transaction_leaves_neither_order_nor_job() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        order = Order.objects.create(email="bob@example.com")
        result = send_confirmation.enqueue(order.pk)
        # The job's row is in Django's transaction: seen there, not yet by anyone else.
        assert jobs_seen_by_django() == 1
        assert job_count() == 0
        assert result.id
        raise RuntimeError("payment refused")
    assert not Order.objects.exists()
    assert job_count() == 0
    with pytest.raises(TaskResultDoesNotExist):
        send_confirmation.get_result(result.id)


def test_a_real_worker_runs_the_task_and_the_result_is_read_back() -> None:
    response = Client().post("/orders/", {"email": "cy@example.com"})
    body = response.json()
    failing = refuse.enqueue("out of stock")
    asking = which_attempt.enqueue()
    later = send_confirmation.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1)

    run_worker()

    result = send_confirmation.get_result(body["task"])
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"order": body["order"], "sent_to": "cy@example.com"}
    assert result.attempts == 1 and result.finished_at is not None
    assert Order.objects.get(pk=body["order"]).confirmed
    response = Client().get(f"/orders/result/{body['task']}/")
    assert response.json() == {
        "status": "SUCCESSFUL",
        "value": {"order": body["order"], "sent_to": "cy@example.com"},
    }

    failing.refresh()
    assert failing.status == TaskResultStatus.FAILED
    assert failing.errors[0].exception_class is ValueError
    assert "out of stock" in failing.errors[0].traceback

    context = which_attempt.get_result(asking.id)
    assert context.return_value == {"id": asking.id, "attempt": 1}

    later.refresh()
    assert later.status == TaskResultStatus.READY  # its run_after is an hour away
    assert later.task.run_after == send_confirmation.using(run_after=later.task.run_after).run_after


def test_async_enqueue_and_get_result() -> None:
    async def go() -> tuple[object, object]:
        result = await send_confirmation.aenqueue(7)
        return result, await send_confirmation.aget_result(result.id)

    result, again = asyncio.run(go())
    assert again == result


ON_COMMIT = {"default": {"BACKEND": "corequeue.contrib.django.CorequeueBackend", "QUEUES": []}}


@override_settings(TASKS=ON_COMMIT)
def test_without_a_shared_database_an_enqueue_waits_for_the_commit() -> None:
    with transaction.atomic():
        result = send_confirmation.enqueue(5)
        assert result.id.startswith("pending-")
        assert jobs_seen_by_django() == 0  # not written yet
    assert job_count() == 1
    assert send_confirmation.get_result(result.id).args == [5]

    with pytest.raises(RuntimeError), transaction.atomic():
        send_confirmation.enqueue(6)
        raise RuntimeError("rolled back")
    assert job_count() == 1
