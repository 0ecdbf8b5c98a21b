"""The project's tasks: Django's task API, run by corequeue's workers."""

try:
    from django.tasks import TaskContext, task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import TaskContext, task

from orders.models import Order


@task(queue_name="mail", priority=10)
def send_confirmation(order_id: int) -> dict[str, object]:
    order = Order.objects.get(pk=order_id)
    order.confirmed = True
    order.save(update_fields=["confirmed"])
    return {"order": order_id, "sent_to": order.email}


@task()
def refuse(reason: str) -> None:
    raise ValueError(reason)


@task(takes_context=True)
def which_attempt(context: TaskContext) -> dict[str, object]:
    """A task that takes its context: its own result id and attempt, read from corequeue."""
    return {"id": context.task_result.id, "attempt": context.attempt}
