"""Where a contract's events live: topic names derived from the event catalogs, and the payload validators."""

from __future__ import annotations

from dataclasses import dataclass

from framework.contract.spec import Contract
from framework.contract.subcontracts import EventCatalog, EventSpec
from framework.errors import NodeRuleError
from framework.events.topics import TopicClass, TopicName
from framework.runtime.payloads import PayloadValidator


@dataclass(frozen=True)
class Route:
    spec: EventSpec
    catalog: EventCatalog
    topic: str
    dead_letter_topic: str | None
    validator: PayloadValidator


def topic_of(spec: EventSpec, catalog: EventCatalog, env: str) -> TopicName:
    return TopicName(env, catalog.tenant, catalog.context, TopicClass(spec.event_class.value), spec.name, spec.version)


class Routes:
    """The routes of every event a contract's catalogs declare, built once per node."""

    def __init__(self, contract: Contract, env: str) -> None:
        self.contract = contract
        self._routes: dict[str, Route] = {}
        for catalog in contract.subcontracts.events:
            for spec in catalog.events:
                if spec.name in self._routes:
                    continue
                topic = topic_of(spec, catalog, env)
                self._routes[spec.name] = Route(
                    spec=spec,
                    catalog=catalog,
                    topic=str(topic),
                    dead_letter_topic=str(topic.dead_letter()) if spec.dead_letter else None,
                    validator=PayloadValidator(spec.payload_model, catalog.models[spec.payload_model], catalog.models),
                )

    def __getitem__(self, event: str) -> Route:
        try:
            return self._routes[event]
        except KeyError:
            raise NodeRuleError(
                f"node '{self.contract.name}': event '{event}' is in none of its catalogs; "
                f"declared: {', '.join(sorted(self._routes)) or 'none'}"
            ) from None

    def __contains__(self, event: object) -> bool:
        return event in self._routes

    def topics(self, events: list[str]) -> set[str]:
        """The topics of ``events`` and their dead-letter topics."""
        out: set[str] = set()
        for name in events:
            route = self[name]
            out.add(route.topic)
            if route.dead_letter_topic:
                out.add(route.dead_letter_topic)
        return out
