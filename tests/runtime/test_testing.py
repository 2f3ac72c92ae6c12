"""The onex test harness: the recording store (SQL recorded and answered, events published only on commit), driver
values, and failures of cases on the shipped registry contract — each with its line and a diff."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from framework.contract.spec import SqlAnswer
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.store import current_transaction
from framework.runtime.testing import CapturedEvent, RecordingStore, as_driver, run_paths
from framework.shipped import shipped_dir

REPO = Path(__file__).resolve().parents[2]


def _envelope(name: str) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type=name,
        source_node_id="t",
        source_service="t",
        source_version="1.0.0",
        environment="test",
        payload={},
    )


async def test_sql_is_recorded_and_answered_from_the_case_else_as_an_empty_database() -> None:
    store = RecordingStore(
        [
            SqlAnswer(match="UPDATE   things", returns="UPDATE 1"),
            SqlAnswer(match="FROM things", returns=[{"id": "0b9d6c3e-5f7a-5c1e-9a43-0e6f1b2c3d4e"}]),
        ],
        [],
    )
    async with store.transaction() as tx:
        assert current_transaction(store) is tx
        assert await tx.execute("UPDATE things\n   SET x = $1", 5) == "UPDATE 1"
        assert await tx.fetch("SELECT id FROM things") == [{"id": uuid.UUID("0b9d6c3e-5f7a-5c1e-9a43-0e6f1b2c3d4e")}]
        assert await tx.execute("DELETE FROM others") == "DELETE 0"
        assert await tx.execute("INSERT INTO others VALUES ($1)", b"x") == "INSERT 0 0"
        assert await tx.fetch("SELECT * FROM others") == []
        assert await tx.fetchrow("SELECT * FROM others") is None
        assert await tx.fetchval("SELECT count(*) FROM others") is None
        assert await tx.claim_event("g", "e1") is True
    assert current_transaction(store) is None
    assert [c.as_dict() for c in store.calls][:2] == [
        {"statement": "UPDATE things SET x = $1", "method": "execute", "args": [5]},
        {"statement": "SELECT id FROM things", "method": "fetch", "args": []},
    ]
    assert store.calls[3].args == ["x"]
    assert len(store.calls) == 7


async def test_an_answer_of_the_wrong_shape_is_an_error_naming_the_entry() -> None:
    store = RecordingStore([SqlAnswer(match="FROM things", returns="UPDATE 1")], [])
    async with store.transaction() as tx:
        with pytest.raises(Exception, match=r"given.sql\[0\] \(match 'FROM things'\).*returns a list of rows"):
            await tx.fetch("SELECT * FROM things")


async def test_events_enqueued_count_only_when_their_transaction_commits() -> None:
    outbox: list[CapturedEvent] = []
    store = RecordingStore([], outbox)
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.enqueue("t", _envelope("lost"))
            raise RuntimeError("rolled back")
    assert outbox == []
    async with store.transaction() as tx:
        await tx.enqueue("t", _envelope("kept"))
        with pytest.raises(RuntimeError):
            async with store.transaction() as savepoint:
                await savepoint.enqueue("t", _envelope("savepoint-lost"))
                raise RuntimeError("savepoint rolled back")
        async with store.transaction() as savepoint:
            await savepoint.enqueue_many("t", [_envelope("savepoint-kept")])
        assert outbox == []  # not before the outermost commit
    assert [e.envelope.event_type for e in outbox] == ["kept", "savepoint-kept"]
    with pytest.raises(Exception, match="after it ended"):
        await tx.execute("SELECT 1")


def test_values_from_the_database_come_as_the_driver_returns_them() -> None:
    assert as_driver({"at": "2024-05-01T12:00:00+00:00", "rows": [{"id": "7D3F1C2B-0A9E-4B8C-9D6E-5F4A3B2C1D0E"}]}) == {
        "at": datetime(2024, 5, 1, 12, tzinfo=UTC),
        "rows": [{"id": uuid.UUID("7d3f1c2b-0a9e-4b8c-9d6e-5f4a3b2c1d0e")}],
    }
    assert as_driver("2024-05-01 12:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert as_driver("2024-05-01") == "2024-05-01"  # a date alone stays text, as do other strings
    assert as_driver("hello") == "hello" and as_driver(3) == 3


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """A copy of the shipped contracts and subcontracts, to edit."""
    shutil.copytree(shipped_dir("contracts"), tmp_path / "contracts")
    shutil.copytree(shipped_dir("subcontracts"), tmp_path / "subcontracts")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> int:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def _case(results: list, name: str):  # type: ignore[no-untyped-def,type-arg]
    [result] = [r for r in results if r.case == name]
    return result


def test_a_wrong_sql_expectation_fails_with_its_line_and_a_diff(shipped: Path) -> None:
    registry = shipped / "contracts" / "node_registry.yaml"
    _edit(registry, "args: [ghost@host-9, healthy]}", "args: [ghost@host-9, unhealthy]}")
    results = run_paths([registry])
    failed = [r for r in results if not r.passed]
    assert [r.case for r in failed] == ["heartbeat_of_an_unknown_node_is_ignored"]
    text = failed[0].format()
    line = next(
        i for i, t in enumerate(registry.read_text().splitlines(), 1) if "name: heartbeat_of_an_unknown_node" in t
    )
    assert text.startswith(f"{registry}:{line}: FAIL node_registry.heartbeat_of_an_unknown_node_is_ignored")
    assert '-      "unhealthy"\n    +      "healthy"' in text and "--- expected SQL" in text


def test_without_the_stated_answer_a_known_node_is_treated_as_unknown(shipped: Path) -> None:
    registry = shipped / "contracts" / "node_registry.yaml"
    _edit(registry, 'sql:\n        - {match: UPDATE "node_registrations", returns: UPDATE 1}\n', "sql: []\n")
    result = _case(run_paths([registry]), "bad_heartbeat_makes_a_node_unhealthy")
    assert not result.passed
    assert '-"unhealthy"\n+"healthy"' in "\n".join(result.failures)


def test_events_of_a_failed_handler_are_rolled_back_with_its_transaction(shipped: Path) -> None:
    reducer = shipped / "contracts" / "bridge_reducer.yaml"
    # total_items must be an integer: the bridge-state-updated publish fails after aggregation work began
    _edit(reducer, "group_key: demo, total_items: 7,\n", "group_key: demo, total_items: seven,\n")
    result = _case(run_paths([reducer]), "a_stamp_folds_into_its_groups_and_opens_a_batch")
    joined = "\n".join(result.failures)
    assert "the handler raised ValueError" in joined
    assert '-    "event": "bridge-state-updated"' in joined  # nothing published: the transaction rolled back


def test_sql_in_a_case_of_a_node_without_a_database_is_reported(tmp_path: Path) -> None:
    source = REPO / "tests" / "runtime" / "contracts"
    for name in ("word_counter.yaml", "catalog.yaml"):
        shutil.copy(source / name, tmp_path / name)
    contract = tmp_path / "word_counter.yaml"
    _edit(contract, "        - {event: words-counted, payload: {doc_id: d1, words: 4}}\n", "      sql: []\n")
    result = _case(run_paths([contract]), "counts_words")
    assert result.failures == ["the case names SQL, but the node has no database (no postgres effect or state, no fsm)"]


def test_what_a_node_does_while_starting_is_not_part_of_a_case(shipped: Path) -> None:
    # The registry publishes registry-introspection-requested on start; the stamping node loads its file types.
    results = run_paths(
        [shipped / "contracts" / "node_registry.yaml", shipped / "contracts" / "metadata_stamping.yaml"]
    )
    assert all(r.passed for r in results), "\n".join(r.format() for r in results if not r.passed)
    assert _case(results, "heartbeat_of_an_unknown_node_is_ignored").passed  # expects events: []
