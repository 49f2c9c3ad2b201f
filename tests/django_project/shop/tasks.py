"""The shop's tasks (found by ``app.autodiscover_tasks()``)."""

from __future__ import annotations

from celery import shared_task


class OutOfStock(Exception):
    pass


@shared_task(name="shop.ping")
def ping() -> str:
    return "pong"


@shared_task(name="shop.price")
def price(item: str, quantity: int) -> int:
    return {"apple": 3, "pear": 5}[item] * quantity


@shared_task(name="shop.total")
def total(prices: list) -> int:
    return sum(prices)


@shared_task(name="shop.discount")
def discount(amount: int, percent: int) -> int:
    return amount - amount * percent // 100


@shared_task(name="shop.reserve")
def reserve(item: str) -> str:
    raise OutOfStock(f"no {item} left")


@shared_task(name="shop.results_stored")
def results_stored(_: object = None) -> int:
    """How many task results Django's ORM sees (a task using the project's database)."""
    from django_celery_results.models import TaskResult

    return TaskResult.objects.count()
