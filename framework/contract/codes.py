"""Every finding code, declared once. ``docs/validation-codes.md`` is generated from this table and the golden
examples in ``tests/golden/invalid/``; a test keeps the three in step. Codes are stable: never reuse one."""

from __future__ import annotations

from dataclasses import dataclass

from framework.contract.findings import Level


@dataclass(frozen=True)
class Code:
    code: str
    level: Level
    title: str
    explanation: str


_E, _W = Level.ERROR, Level.WARNING

CODES: dict[str, Code] = {
    c.code: c
    for c in [
        # Loading
        Code(
            "L001",
            _E,
            "file unreadable or too large",
            "A path named on the command line does not exist or is neither a regular file nor a directory (a FIFO, "
            "a socket, a device); a .yaml or .yml entry found in a directory is not a regular file, or is a symbolic "
            "link to nothing; a directory cannot be listed; or a file cannot be read, is a directory, or exceeds the "
            "1 MiB size limit for contract files.",
        ),
        Code("L002", _E, "not UTF-8 text", "The file is binary (contains NUL bytes) or is not valid UTF-8."),
        Code(
            "L003",
            _E,
            "YAML syntax error",
            "The file is not well-formed YAML, or uses YAML features that "
            "contracts do not (complex keys, several documents in one file).",
        ),
        Code(
            "L004",
            _E,
            "duplicate key",
            "The same key appears twice in one mapping. YAML parsers usually keep the "
            "last silently; contracts refuse it.",
        ),
        Code(
            "L005",
            _E,
            "document expands too much",
            "Aliases or $ref expand the document past 100,000 values, or an "
            "alias refers to a node containing it (a YAML bomb).",
        ),
        Code("L006", _E, "nesting too deep", "Mappings and lists are nested more than 64 levels deep."),
        Code(
            "L007",
            _E,
            "unsupported tag",
            "Explicit tags such as !!python/object are refused: contracts are plain "
            "data and loading never executes code.",
        ),
        Code("L008", _E, "$ref target missing", "A $ref names a file that does not exist or is not YAML/JSON."),
        Code("L009", _E, "$ref cycle", "$ref references lead back to a file already being resolved."),
        Code("L010", _E, "$ref pointer invalid", "The JSON pointer after '#' in a $ref does not exist in the file."),
        Code("L011", _E, "empty file", "The file holds no YAML document."),
        Code(
            "L012",
            _E,
            "no YAML files in a directory",
            "A directory named on the command line holds no .yaml or .yml file, in it or below it (hidden folders "
            "and symbolic links to directories are not searched). A check pointed at the wrong directory fails "
            "rather than passing with nothing checked.",
        ),
        # Schema
        Code("S001", _E, "unknown field", "A key that the language does not define at that place (typos included)."),
        Code("S002", _E, "missing required field", "A required key is absent."),
        Code(
            "S003",
            _E,
            "invalid value",
            "A value has the wrong type or form (a name that is not snake_case, a negative timeout, ...).",
        ),
        Code(
            "S004",
            _E,
            "value not allowed",
            "A value outside a fixed set (node_type, operation, kind, ...); the message lists the allowed values.",
        ),
        Code(
            "S005",
            _E,
            "not a contract",
            "The top level is not a mapping with 'node_type' (a contract) or 'kind' (a subcontract).",
        ),
        # FSM
        Code("F001", _E, "initial state undeclared", "initial_state names a state that is not in states."),
        Code("F002", _E, "transition names an unknown state", "A transition's from or to names an undeclared state."),
        Code("F003", _W, "unreachable state", "No chain of transitions leads from the initial state to this state."),
        Code("F004", _E, "dead end", "A non-terminal state has no transition out of it: an instance would be stuck."),
        Code("F005", _E, "transition out of a terminal state", "Terminal states are final; nothing may leave them."),
        Code("F006", _E, "duplicate state", "Two states share a name."),
        Code("F007", _E, "duplicate transition", "Two transitions share a name."),
        Code(
            "F008",
            _E,
            "expression does not parse",
            "A guard or action expression is not valid in the guard "
            "language (comparisons, and/or/not, in, arithmetic, dotted names, len/min/max/abs).",
        ),
        Code(
            "F009",
            _W,
            "ambiguous transitions",
            "Two unguarded transitions leave the same state on the same trigger; only the first would ever be taken.",
        ),
        # Events
        Code(
            "E001",
            _E,
            "subscribed event not in a catalog",
            "A subscription names an event that no event catalog of the contract declares.",
        ),
        Code(
            "E002",
            _E,
            "published event not in a catalog",
            "publishes names an event that no event catalog of the contract declares.",
        ),
        Code("E003", _E, "payload model missing", "A catalog event's payload_model is not among the catalog's models."),
        Code("E004", _E, "duplicate event", "Two events of one catalog share a name."),
        Code(
            "E005",
            _E,
            "undeclared emission",
            "An FSM action or a kafka effect emits an event that the node does not list in publishes.",
        ),
        Code("E006", _W, "duplicate subscription", "The node subscribes to the same event twice."),
        # Effects
        Code("X001", _E, "unknown adapter", "An effect's adapter is not one of postgres, kafka, blake3, http."),
        Code("X002", _E, "effect parameter missing", "A postgres effect other than insert needs key columns."),
        Code("X003", _E, "EFFECT without effects", "An EFFECT node must declare the effects it performs."),
        Code("X004", _E, "COMPUTE with effects", "A COMPUTE node is pure: it may declare no effects."),
        Code("X005", _E, "duplicate effect", "Two effects share a name."),
        Code(
            "X006",
            _E,
            "option of another operation",
            "A postgres effect uses an option its operation does not have: keep and increment are for upserts, "
            "returning for inserts and upserts.",
        ),
        Code(
            "X007",
            _E,
            "keep or increment column not writable",
            "A keep or increment column of an upsert is not among its declared columns, is a key column (the key is "
            "never updated), or is listed twice (in both, or twice in one).",
        ),
        Code(
            "X008",
            _E,
            "returned column without a type",
            "A postgres effect whose columns are typed returns a column that neither its columns nor its key "
            "declare: give returning as a mapping column → type, so the returned row is typed; or a column is "
            "returned twice, or given a type other than the one columns declares.",
        ),
        # Models
        Code("M001", _E, "model not found", "input_model, output_model or a state model names an undeclared model."),
        Code("M002", _E, "invalid JSON Schema", "A model is not a valid JSON Schema (Draft 2020-12)."),
        Code(
            "M003",
            _E,
            "outside the schema subset",
            "A model uses a JSON Schema keyword outside the supported subset, or a $ref that is not '#/$defs/<Model>'.",
        ),
        Code("M004", _E, "unknown model reference", "A model's $ref '#/$defs/Name' names no declared model."),
        # Implementation
        Code("I001", _E, "implementation not importable", "The module of implementation cannot be imported."),
        Code("I002", _E, "implementation class missing", "The module has no class of that name."),
        Code("I003", _E, "implementation of another kind", "The class's node_type differs from the contract's."),
        Code("I004", _E, "handler method missing", "A subscription's handler is not a method of the implementation."),
        # Workflow
        Code("W001", _E, "duplicate step", "Two workflow steps share a name."),
        Code("W002", _E, "workflow on the wrong kind", "An ORCHESTRATOR needs a workflow; other kinds have none."),
        Code("W003", _E, "step condition does not parse", "A step's when guard is not valid in the guard language."),
        Code(
            "W004", _W, "step targets an unknown node", "A step calls a node that is not among the validated contracts."
        ),
        Code(
            "W005",
            _E,
            "command step events undeclared",
            "A command step's command must be published and its reply subscribed by the orchestrator.",
        ),
        Code("W006", _E, "parallel group split", "Steps of one parallel_group must be consecutive."),
        # Aggregation
        Code(
            "A001",
            _E,
            "strategy parameter missing",
            "TIME_WINDOW needs window_ms, SIZE_BUCKETS ascending buckets, CUSTOM a function.",
        ),
        Code("A002", _E, "default strategy not declared", "The aggregation's default is not among its strategies."),
        Code("A003", _E, "aggregation on the wrong kind", "A REDUCER needs an aggregation; other kinds have none."),
        # Retry
        Code(
            "R001",
            _W,
            "dead-lettering off",
            "With dead_letter: false, a message that fails its last attempt, or can never be handled (poison), is "
            "dropped and only logged; keep dead_letter: true unless losing such messages is acceptable.",
        ),
        # Tests
        Code(
            "T001",
            _E,
            "test event not subscribed",
            "A test case's given.event is not among the contract's subscriptions: the node could not receive it.",
        ),
        Code(
            "T002",
            _E,
            "expected event not published",
            "A test case expects an event that the contract does not list in publishes: the node may not emit it.",
        ),
        Code(
            "T003",
            _E,
            "test state not in the FSM",
            "A test case's given.state or expect.state is not a state of the contract's fsm, or the contract has no "
            "fsm.",
        ),
        Code(
            "T004",
            _E,
            "test names an undeclared effect",
            "An expected effect call, or a given.returns entry, names an effect the contract does not declare.",
        ),
        Code("T005", _E, "duplicate test name", "Two test cases of one contract share a name."),
        # Across the validated set
        Code("N001", _E, "duplicate node name", "Two contracts declare the same node name."),
        Code(
            "N002",
            _W,
            "published, never consumed",
            "No validated contract subscribes to an event that one "
            "publishes (mark the catalog event external_consumers: true if it is consumed elsewhere).",
        ),
        Code(
            "N003",
            _W,
            "consumed, never published",
            "No validated contract publishes an event that one "
            "subscribes to (mark it external_producers: true if it comes from elsewhere).",
        ),
    ]
}
