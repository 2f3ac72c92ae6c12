"""The contract: one YAML document declares a node. These models are the single source of the language."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from framework.contract.names import EventName, Identifier, ModelName, PythonRef
from framework.contract.subcontracts import (
    FSM,
    Aggregation,
    EventCatalog,
    JsonSchema,
    RetryPolicy,
    Spec,
    StateSpec,
    Workflow,
)


class NodeType(enum.StrEnum):
    EFFECT = "EFFECT"
    COMPUTE = "COMPUTE"
    REDUCER = "REDUCER"
    ORCHESTRATOR = "ORCHESTRATOR"
    REGISTRY = "REGISTRY"


class Version(Spec):
    major: int = Field(ge=0)
    minor: int = Field(ge=0)
    patch: int = Field(ge=0)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


class Subscription(Spec):
    """An event the node consumes, and the method of its implementation that handles it."""

    event: EventName
    handler: Identifier = "handle"
    group: str | None = Field(default=None, description="consumer group; default: the node's name")


# --- Effects: the only I/O an EFFECT node may perform --------------------------------------------------------------


#: A column's PostgreSQL type as a contract declares it: a base type, ``[]`` for an array of it, and a trailing ``?``
#: when the column may be NULL (``text``, ``bigint?``, ``text[]``, ``timestamptz?``).
COLUMN_TYPES = (
    "text",
    "varchar",
    "uuid",
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "numeric",
    "boolean",
    "date",
    "timestamp",
    "timestamptz",
    "json",
    "jsonb",
    "bytea",
)
ColumnType = Annotated[
    str,
    Field(
        pattern=r"^(" + "|".join(COLUMN_TYPES) + r")(\[\])?\??$",
        description="a PostgreSQL type (" + ", ".join(COLUMN_TYPES) + "), [] for an array, ? when it may be NULL",
    ),
]


class PostgresEffect(Spec):
    name: Identifier
    adapter: Literal["postgres"]
    table: Identifier
    operation: Literal["insert", "upsert", "select", "update", "delete"]
    key: list[Identifier] = Field(default_factory=list, description="key columns: required except for insert")
    columns: list[Identifier] | dict[Identifier, ColumnType] = Field(
        default_factory=list,
        description="columns written or read (default: all, the table's, read at run time); as a mapping "
        "column → type, they also type the generated adapter, whose SQL is then fixed at generation time",
    )
    keep: list[Identifier] = Field(
        default_factory=list,
        description="upsert: columns written when the row is inserted and left as stored on a conflict (an id, a "
        "creation time); declared, non-key columns",
    )
    increment: list[Identifier] = Field(
        default_factory=list,
        description="upsert: columns that take the row's value when it is inserted and the stored value + 1 on a "
        "conflict (a version); declared, non-key columns",
    )
    returning: list[Identifier] | dict[Identifier, ColumnType] = Field(
        default_factory=list,
        description="insert/upsert: the columns the statement returns (default: the columns it writes), among them "
        "columns the database fills in (created_at, a generated id); as a mapping column → type, which types the "
        "returned row's columns that 'columns' does not declare",
    )
    description: str = ""

    @property
    def column_types(self) -> dict[str, str]:
        """Declared column → type (empty when the columns are a plain list)."""
        return dict(self.columns) if isinstance(self.columns, dict) else {}

    @property
    def returning_types(self) -> dict[str, str]:
        """Types of the returned columns given in ``returning`` (empty when it is a plain list)."""
        return dict(self.returning) if isinstance(self.returning, dict) else {}


class KafkaEffect(Spec):
    name: Identifier
    adapter: Literal["kafka"]
    event: EventName
    description: str = ""


class Blake3Effect(Spec):
    name: Identifier
    adapter: Literal["blake3"]
    max_threads: int | Literal["auto"] = Field(default="auto", description="threads for inputs of 1 MB and more")
    description: str = ""


class HttpEffect(Spec):
    name: Identifier
    adapter: Literal["http"]
    url: str = Field(min_length=1, description="may use ${VAR} placeholders filled from the environment")
    method: Literal["GET", "POST", "PUT", "DELETE"] = "GET"
    timeout_ms: int = Field(default=5_000, gt=0)
    description: str = ""


Effect = Annotated[PostgresEffect | KafkaEffect | Blake3Effect | HttpEffect, Field(discriminator="adapter")]


class Subcontracts(Spec):
    fsm: FSM | None = None
    events: list[EventCatalog] = Field(default_factory=list, description="one catalog or a list of them")
    aggregation: Aggregation | None = None
    workflow: Workflow | None = None
    retry: RetryPolicy | None = None
    state: StateSpec | None = None

    @field_validator("events", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


# --- Tests: examples of the node's behaviour that ``onex test`` runs, effects recorded instead of executed ----------


class SqlAnswer(Spec):
    """What the recorded database answers to the statements that contain ``match`` (the first entry that matches)."""

    match: str = Field(min_length=1, description="a part of the statement; runs of whitespace count as one space")
    returns: Any = Field(
        description="execute: a status ('UPDATE 1'); fetch: a list of rows; fetchrow: a row or null; fetchval: a "
        "value; copy_records: a row count"
    )


class Given(Spec):
    """What a test case starts from: one input event, and optionally the FSM instance's state and context."""

    event: EventName = Field(description="a subscribed event, delivered to its handler")
    payload: dict[str, Any] = Field(default_factory=dict)
    state: Identifier | None = Field(default=None, description="initial state of the FSM instance (needs an fsm)")
    context: dict[str, Any] = Field(default_factory=dict, description="initial context of the FSM instance")
    instance: str = Field(default="test", min_length=1, description="id of the FSM instance state/context seed")
    returns: dict[Identifier, Any] = Field(
        default_factory=dict, description="effect name → what the recorded effect returns (default: per adapter)"
    )
    sql: list[SqlAnswer] = Field(
        default_factory=list,
        description="what the recorded database answers, for nodes that run SQL in the host's transaction "
        "(default: it is empty)",
    )


class ExpectedEvent(Spec):
    """A published event: its name, and a subset of its payload (nested mappings match as subsets too)."""

    event: EventName
    payload: dict[str, Any] = Field(default_factory=dict)


class ExpectedEffectCall(Spec):
    """A recorded effect call: the effect, and optionally its positional and keyword arguments (subsets)."""

    effect: Identifier
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None


class ExpectedSql(Spec):
    """A recorded SQL statement: a part of its text, and optionally the method and arguments (subsets)."""

    statement: str = Field(min_length=1, description="a part of the statement; runs of whitespace count as one space")
    method: Literal["execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_records"] | None = None
    args: list[Any] | None = None


class Expectation(Spec):
    """What must hold after the handler ran. Lists are compared in order; a key left out is not checked."""

    events: list[ExpectedEvent] | None = Field(default=None, description="every event published, in order")
    state: Identifier | None = Field(default=None, description="state of the FSM instance at the end")
    effects: list[ExpectedEffectCall] | None = Field(default=None, description="every effect call, in order")
    sql: list[ExpectedSql] | None = Field(
        default=None, description="every SQL statement run through the host's store, in order"
    )
    error: str | None = Field(default=None, description="the handler raises an error whose message contains this")


class ContractTest(Spec):
    """One example: given an input event (and FSM state), expect output events, an end state and effect calls."""

    name: Identifier
    description: str = ""
    given: Given
    expect: Expectation = Field(default_factory=Expectation)


class Contract(Spec):
    """A node: who it is, what it consumes and emits, what I/O it may do, and how it behaves."""

    contract_version: Literal["1.0"]
    name: Identifier
    version: Version
    node_type: NodeType = Field(strict=False)
    description: str = ""
    implementation: PythonRef | None = Field(default=None, description="module:Class of the handler")
    models: dict[ModelName, JsonSchema] = Field(default_factory=dict)
    input_model: ModelName | None = None
    output_model: ModelName | None = None
    subscriptions: list[Subscription] = Field(default_factory=list)
    publishes: list[EventName] = Field(default_factory=list)
    effects: list[Effect] = Field(default_factory=list)
    subcontracts: Subcontracts = Field(default_factory=Subcontracts)
    tests: list[ContractTest] = Field(default_factory=list, description="examples that `onex test` runs")

    def catalog_event(self, name: str) -> tuple[EventCatalog, int] | None:
        """The catalog declaring event ``name`` and its index there, if any."""
        for catalog in self.subcontracts.events:
            for i, event in enumerate(catalog.events):
                if event.name == name:
                    return catalog, i
        return None
