"""django-tasks 0.12.0's own TaskTestCase, run with corequeue's backend as ``default``
(see django_tasks_suite/README.md for what is selected and why)."""

from __future__ import annotations

import pytest
from django.test import override_settings

pytest.importorskip("django_tasks", reason="the suite is django-tasks' (Django 5.2 backport)")

from tests.django_tasks_suite import upstream_test_tasks as upstream

TASKS = {
    "default": {
        "BACKEND": "corequeue.contrib.django.CorequeueBackend",
        "QUEUES": ["default", "queue_1"],
        "OPTIONS": {"DATABASE": "default"},
    },
    "immediate": {
        "BACKEND": "django_tasks.backends.immediate.ImmediateBackend",
        "QUEUES": [],
    },
    "missing": {"BACKEND": "does.not.exist"},
}

#: Tests of the dummy backend itself, not of the API (README.md).
LEFT_OUT = (
    "test_using_correct_backend",
    "test_get_backend",
    "test_enqueue_task",
    "test_enqueue_task_async",
)


@override_settings(TASKS=TASKS)
class TestCorequeueBackend(upstream.TaskTestCase):  # type: ignore[misc,name-defined]
    databases = {"default"}  # corequeue's rows live in Django's database

    def setUp(self) -> None:  # upstream empties the dummy backend's list of results
        pass

    def test_these_tests_run_on_corequeue(self) -> None:
        from django_tasks import task_backends

        import corequeue
        from corequeue.contrib.django import CorequeueBackend

        self.assertIsInstance(task_backends["default"], CorequeueBackend)
        result = upstream.test_tasks.noop_task.enqueue(1)
        record = corequeue.get_store().job_get(int(result.id))
        self.assertEqual(record.name, "corequeue.contrib.django.DjangoTask")


for _name in LEFT_OUT:
    setattr(TestCorequeueBackend, _name, None)
