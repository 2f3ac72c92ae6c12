"""Handler classes named by the valid golden contracts; ``onex validate`` imports them from the working directory."""

from typing import Any


class OrderStore:
    node_type = "EFFECT"

    def on_order_priced(self, event: Any) -> None: ...

    def on_payment_requested(self, event: Any) -> None: ...

    def reserve(self, order: Any) -> None: ...


class OrderPricer:
    node_type = "COMPUTE"

    def price(self, order: Any) -> Any:
        return order

    def log_rejection(self, context: Any) -> None: ...


class Checkout:
    node_type = "ORCHESTRATOR"

    def on_checkout_requested(self, event: Any) -> None: ...

    def on_payment_settled(self, event: Any) -> None: ...

    def validate_order(self, order: Any) -> None: ...


class SalesTotals:
    node_type = "REDUCER"

    def handle(self, event: Any) -> None: ...


def fold_by_weekday(total: int, item: Any) -> int:
    return total + 1
