"""The reusable parts of a contract: FSMs, event catalogs, workflows, aggregations, retry policies, state.

Each may stand inline in a contract's ``subcontracts`` section or in a file of its own under ``subcontracts/``
(referenced with ``$ref``). A file of its own says what it is with ``kind``.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from framework.contract.names import EventName, Identifier, ModelName, PythonRef

JsonSchema = dict[str, Any]


class Spec(BaseModel):
    """Base of every model of the language: unknown keys are errors, values are immutable, and values are not
    coerced (``terminal: yes`` is an error, not True: the loader keeps yes/no/on/off as strings on purpose).
    Enum fields opt out of strictness so that their YAML strings are accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


# --- FSM -----------------------------------------------------------------------------------------------------------


class EmitAction(Spec):
    """Emit an event; ``payload`` maps payload fields to guard-language expressions over the context."""

    emit: EventName
    payload: dict[str, str] = Field(default_factory=dict)


class SetAction(Spec):
    """Set context fields to the values of guard-language expressions."""

    set: dict[Identifier, str]


class CallAction(Spec):
    """Call a method of the node's implementation with the context."""

    call: Identifier


def _action_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("emit", "set", "call"):
            if key in value:
                return key
    return None


Action = Annotated[
    Annotated[EmitAction, Tag("emit")] | Annotated[SetAction, Tag("set")] | Annotated[CallAction, Tag("call")],
    Discriminator(
        _action_tag,
        custom_error_type="invalid_action",
        custom_error_message="an action is one of {emit: EVENT}, {set: {FIELD: EXPR}} or {call: METHOD}",
    ),
]


class State(Spec):
    name: Identifier
    terminal: bool = False
    description: str = ""
    on_entry: list[Action] = Field(default_factory=list)
    on_exit: list[Action] = Field(default_factory=list)


class Transition(Spec):
    name: Identifier
    from_: list[Identifier] = Field(alias="from", min_length=1, description="source state(s); '*' is not allowed")
    to: Identifier
    trigger: Identifier
    guard: str | None = Field(default=None, description="guard-language expression over the context")
    actions: list[Action] = Field(default_factory=list)
    description: str = ""

    @field_validator("from_", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class FSM(Spec):
    """A finite state machine: states, an initial state, and guarded transitions fired by triggers."""

    kind: Literal["fsm"] = "fsm"
    state_machine_name: Identifier
    description: str = ""
    initial_state: Identifier
    states: list[State] = Field(min_length=1)
    transitions: list[Transition] = Field(default_factory=list)


# --- Event catalog -------------------------------------------------------------------------------------------------


class EventClass(enum.StrEnum):
    """The ``{class}`` segment of a topic name. Dead-letter topics (``dlt``) are derived, never declared."""

    EVT = "evt"
    CMD = "cmd"
    QRS = "qrs"


class EventSpec(Spec):
    name: EventName
    version: int = Field(default=1, ge=1)
    event_class: EventClass = Field(default=EventClass.EVT, alias="class", strict=False)
    payload_model: ModelName
    description: str = ""
    partition_key: str | None = Field(default=None, description="payload field whose value keys the Kafka message")
    dead_letter: bool = Field(default=True, description="poison or exhausted messages go to the derived dlt topic")
    external_consumers: bool = Field(default=False, description="consumed outside the validated contracts")
    external_producers: bool = Field(default=False, description="produced outside the validated contracts")


class EventCatalog(Spec):
    """Events, their payload models, and the topic namespace they live in."""

    kind: Literal["events"] = "events"
    catalog_name: Identifier
    description: str = ""
    tenant: Identifier = "omninode_bridge"
    context: Identifier = "onex"
    models: dict[ModelName, JsonSchema] = Field(default_factory=dict)
    events: list[EventSpec] = Field(min_length=1)


# --- Retry ---------------------------------------------------------------------------------------------------------


class Backoff(Spec):
    initial_ms: int = Field(default=100, ge=0)
    multiplier: float = Field(default=2.0, ge=1.0)
    max_ms: int = Field(default=10_000, ge=0)
    jitter: float = Field(default=0.1, ge=0.0, le=1.0, description="fraction of each delay drawn at random")


class RetryPolicy(Spec):
    """How often a failed handler or step is tried, how long to wait between tries, and where poison goes."""

    kind: Literal["retry"] = "retry"
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: Backoff = Field(default_factory=Backoff)
    dead_letter: bool = True


# --- Workflow ------------------------------------------------------------------------------------------------------


class NodeTarget(Spec):
    """Call a handler of another node hosted in the same process."""

    node: Identifier
    handler: Identifier = "handle"


class CommandTarget(Spec):
    """Send a command event and await its reply event over the bus (matched by correlation id)."""

    command: EventName
    reply: EventName


class HttpTarget(Spec):
    """Call an HTTP service. ``url`` may use ``${VAR}`` placeholders filled from the environment."""

    http: str
    method: Literal["GET", "POST", "PUT", "DELETE"] = "POST"


class LocalTarget(Spec):
    """Call a method of the orchestrator's own implementation."""

    handler: Identifier


def _target_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("node", "command", "http", "handler"):
            if key in value:
                return key
    return None


StepTarget = Annotated[
    Annotated[NodeTarget, Tag("node")]
    | Annotated[CommandTarget, Tag("command")]
    | Annotated[HttpTarget, Tag("http")]
    | Annotated[LocalTarget, Tag("handler")],
    Discriminator(
        _target_tag,
        custom_error_type="invalid_target",
        custom_error_message="a target is one of {node: NAME, handler: METHOD}, "
        "{command: EVENT, reply: EVENT}, {http: URL} or {handler: METHOD}",
    ),
]


class Step(Spec):
    name: Identifier
    description: str = ""
    target: StepTarget
    timeout_ms: int = Field(default=5_000, gt=0)
    retry: RetryPolicy | None = None
    required: bool = True
    when: str | None = Field(default=None, description="guard: the step runs only when it holds")
    parallel_group: Identifier | None = Field(
        default=None, description="consecutive steps of one group run concurrently; the next step waits for all"
    )


class Workflow(Spec):
    """The ordered steps of an orchestrator, run as a LlamaIndex Workflow."""

    kind: Literal["workflow"] = "workflow"
    workflow_name: Identifier
    description: str = ""
    timeout_ms: int = Field(default=30_000, gt=0)
    max_in_flight: int = Field(default=100, ge=1)
    steps: list[Step] = Field(min_length=1)


# --- Aggregation ---------------------------------------------------------------------------------------------------


class AggregationType(enum.StrEnum):
    NAMESPACE_GROUPING = "NAMESPACE_GROUPING"
    TIME_WINDOW = "TIME_WINDOW"
    FILE_TYPE_GROUPING = "FILE_TYPE_GROUPING"
    SIZE_BUCKETS = "SIZE_BUCKETS"
    WORKFLOW_GROUPING = "WORKFLOW_GROUPING"
    CUSTOM = "CUSTOM"


class AggregationStrategy(Spec):
    type: AggregationType = Field(strict=False)
    group_by: str | None = Field(default=None, description="payload field (dotted) that names the group")
    window_ms: int | None = Field(default=None, gt=0, description="TIME_WINDOW: length of a window")
    buckets: list[int] | None = Field(default=None, description="SIZE_BUCKETS: ascending upper bounds in bytes")
    function: PythonRef | None = Field(default=None, description="CUSTOM: module:callable that folds an item")


class Aggregation(Spec):
    """How a reducer folds a stream of events into grouped, persisted state."""

    kind: Literal["aggregation"] = "aggregation"
    aggregation_name: Identifier
    description: str = ""
    default: AggregationType = Field(default=AggregationType.NAMESPACE_GROUPING, strict=False)
    strategies: list[AggregationStrategy] = Field(min_length=1)
    batch_size: int = Field(default=100, ge=1)
    flush_interval_ms: int = Field(default=1_000, gt=0)


# --- State ---------------------------------------------------------------------------------------------------------


class StateSpec(Spec):
    """Where a node keeps its state."""

    kind: Literal["state"] = "state"
    backend: Literal["postgres", "memory"] = "postgres"
    table: Identifier
    key: list[Identifier] = Field(min_length=1)
    model: ModelName | None = None
    ttl_s: int | None = Field(default=None, gt=0)


SubcontractKind = Literal["fsm", "events", "retry", "workflow", "aggregation", "state"]

Subcontract = Annotated[
    FSM | EventCatalog | RetryPolicy | Workflow | Aggregation | StateSpec,
    Field(discriminator="kind"),
]

SUBCONTRACT_MODELS: dict[str, type[Spec]] = {
    "fsm": FSM,
    "events": EventCatalog,
    "retry": RetryPolicy,
    "workflow": Workflow,
    "aggregation": Aggregation,
    "state": StateSpec,
}
