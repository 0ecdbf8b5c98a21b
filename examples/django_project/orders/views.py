from django.db import transaction
from django.http import HttpRequest, JsonResponse

from orders.models import Order
from orders.tasks import send_confirmation


def place_order(request: HttpRequest) -> JsonResponse:
    """Create an order and enqueue its confirmation in one transaction: both or neither."""
    with transaction.atomic():
        order = Order.objects.create(email=request.POST["email"])
        result = send_confirmation.enqueue(order.pk)
    return JsonResponse({"order": order.pk, "task": result.id})


def confirmation_result(request: HttpRequest, result_id: str) -> JsonResponse:
    result = send_confirmation.get_result(result_id)
    value = result.return_value if result.is_finished and not result.errors else None
    return JsonResponse({"status": str(result.status), "value": value})
