"""The Store conformance suite: what every implementation of :mod:`framework.ports.store` must do.

Each implementation is a fixture named in ``STORES`` yielding a started store on an empty, migrated database; today
that is the PostgreSQL store (each test on a database of its own). Rows are read back through the port itself, so a
second implementation joins with one line.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from framework.adapters.postgres_store import decode_outbox_headers
from framework.errors import UsageError
from framework.events.envelope import OnexEnvelopeV1
from framework.ports.store import Store, current_transaction, deferred_outbox
from tests.pg import open_store


@pytest.fixture
async def postgres_store(postgres_dsn: str) -> AsyncIterator[Store]:
    async with open_store(postgres_dsn) as store:
        yield store


STORES: list[Any] = [pytest.param("postgres_store", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Store:
    return cast(Store, request.getfixturevalue(request.param))


def envelope(n: int = 0, *, key: str | None = None, **payload: Any) -> OnexEnvelopeV1:
    return OnexEnvelopeV1(
        event_type="store-test",
        source_node_id="store-tests",
        source_service="tests",
        source_version="1.0.0",
        partition_key=key,
        payload={"n": n, **payload},
    )


async def outbox_rows(store: Store) -> list[dict[str, Any]]:
    async with store.transaction() as tx:
        return await tx.fetch("SELECT id, topic, key, value, headers, sent_at FROM outbox ORDER BY id")


async def test_a_block_that_ends_normally_commits(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        status = await tx.execute("INSERT INTO notes VALUES ($1, $2)", 1, "kept")
    assert status == "INSERT 0 1"
    async with store.transaction() as tx:
        assert await tx.fetch("SELECT id, body FROM notes") == [{"id": 1, "body": "kept"}]


async def test_a_block_that_raises_rolls_back_and_the_error_propagates(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE notes (id int PRIMARY KEY)")
    with pytest.raises(RuntimeError, match="handler failed"):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO notes VALUES (1)")
            raise RuntimeError("handler failed")
    async with store.transaction() as tx:
        assert await tx.fetchval("SELECT count(*) FROM notes") == 0


async def test_a_nested_transaction_is_a_savepoint(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE notes (id int PRIMARY KEY)")
    async with store.transaction() as outer:
        await outer.execute("INSERT INTO notes VALUES (1)")
        with pytest.raises(RuntimeError):
            async with store.transaction() as inner:
                assert current_transaction(store) is inner
                await inner.execute("INSERT INTO notes VALUES (2)")
                raise RuntimeError("undo only the inner work")
        assert current_transaction(store) is outer
        async with store.transaction() as kept:
            await kept.execute("INSERT INTO notes VALUES (3)")
    async with store.transaction() as tx:
        assert [r["id"] for r in await tx.fetch("SELECT id FROM notes ORDER BY id")] == [1, 3]


async def test_current_transaction_is_the_open_one_and_none_outside_or_after(store: Store) -> None:
    assert current_transaction() is None and current_transaction(store) is None
    seen_later: list[Any] = []
    release = asyncio.Event()

    async def outlives_the_block() -> None:
        await release.wait()
        seen_later.append(current_transaction(store))

    async with store.transaction() as tx:
        assert current_transaction() is tx and current_transaction(store) is tx
        assert tx.store is store and tx.active
        # A task started inside the block inherits the context; once the block ends it must not see a dead tx.
        task = asyncio.create_task(outlives_the_block())
    assert not tx.active
    assert current_transaction(store) is None
    release.set()
    await task
    assert seen_later == [None]


async def test_current_transaction_of_another_store_is_not_joined(store: Store) -> None:
    class Other:
        def transaction(self) -> Any:
            raise AssertionError("never called")

    async with store.transaction():
        assert current_transaction(cast(Store, Other())) is None


async def test_claim_event_is_true_once_per_group_and_event(store: Store) -> None:
    event_id = str(uuid.uuid4())
    async with store.transaction() as tx:
        assert await tx.claim_event("billing", event_id) is True
    async with store.transaction() as tx:
        assert await tx.claim_event("billing", event_id) is False
        assert await tx.claim_event("audit", event_id) is True  # another group has its own record
        assert await tx.claim_event("billing", str(uuid.uuid4())) is True


async def test_a_rolled_back_claim_does_not_count(store: Store) -> None:
    event_id = str(uuid.uuid4())
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            assert await tx.claim_event("g", event_id) is True
            raise RuntimeError("the handler's effect failed")
    async with store.transaction() as tx:
        assert await tx.claim_event("g", event_id) is True


async def test_of_concurrent_claims_of_one_event_exactly_one_wins(store: Store) -> None:
    event_id = str(uuid.uuid4())

    async def claim() -> bool:
        async with store.transaction() as tx:
            won = await tx.claim_event("g", event_id)
            await asyncio.sleep(0.05)  # hold the transaction so the claims overlap
            return won

    results = await asyncio.gather(*(claim() for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]


async def test_claim_event_refuses_an_id_that_is_not_a_uuid(store: Store) -> None:
    async with store.transaction() as tx:
        with pytest.raises(UsageError, match="event_id must be a UUID"):
            await tx.claim_event("g", "not-a-uuid")


async def test_enqueued_events_exist_only_if_their_transaction_commits(store: Store) -> None:
    kept, dropped = envelope(1, key="k"), envelope(2, key="k")
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.enqueue("test.store.events", dropped)
            raise RuntimeError("rolled back")
    async with store.transaction() as tx:
        outbox_id = await tx.enqueue("test.store.events", kept, headers=(("trace", b"abc"), ("raw", b"\xff\x00")))
    (row,) = await outbox_rows(store)
    assert row["id"] == outbox_id
    assert row["topic"] == "test.store.events"
    assert row["key"] == b"k"
    assert row["sent_at"] is None
    assert OnexEnvelopeV1.from_json(row["value"]) == kept
    assert decode_outbox_headers(row["headers"]) == (("trace", b"abc"), ("raw", b"\xff\x00"))


async def test_enqueue_resolves_the_key_now_and_an_explicit_key_wins(store: Store) -> None:
    without_key = envelope(1)
    async with store.transaction() as tx:
        await tx.enqueue("test.store.events", without_key)
        await tx.enqueue("test.store.events", envelope(2, key="ignored"), key=b"explicit")
        assert await tx.enqueue_many("test.store.events", [envelope(3, key="a"), envelope(4, key="b")]) == 2
    rows = await outbox_rows(store)
    assert [r["key"] for r in rows] == [without_key.kafka_key(), b"explicit", b"a", b"b"]
    assert [OnexEnvelopeV1.from_json(r["value"]).payload["n"] for r in rows] == [1, 2, 3, 4]


async def test_deferred_outbox_writes_the_events_in_their_order_when_the_block_ends(store: Store) -> None:
    async with store.transaction() as tx:
        async with deferred_outbox(tx) as outbox:
            assert current_transaction(store) is outbox  # publishers inside the block enqueue through it
            await outbox.enqueue("test.store.events", envelope(1, key="a"))
            assert await outbox.enqueue_many("test.store.events", [envelope(2, key="b"), envelope(3, key="c")]) == 2
            await outbox.enqueue("test.store.other", envelope(4, key="ignored"), key=b"explicit")
            await outbox.enqueue("test.store.events", envelope(5, key="e"))
            assert await tx.fetchval("SELECT count(*) FROM outbox") == 0  # kept, not written yet
        assert current_transaction(store) is tx
        assert await tx.fetchval("SELECT count(*) FROM outbox") == 5  # written, in the same transaction
        # Whatever still publishes through it afterwards (a task started in the block) is written at once.
        assert await outbox.enqueue("test.store.events", envelope(6, key="f")) > 0
        assert await tx.fetchval("SELECT count(*) FROM outbox") == 6
    rows = await outbox_rows(store)
    assert [OnexEnvelopeV1.from_json(r["value"]).payload["n"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [(r["topic"], r["key"]) for r in rows] == [
        ("test.store.events", b"a"),
        ("test.store.events", b"b"),
        ("test.store.events", b"c"),
        ("test.store.other", b"explicit"),
        ("test.store.events", b"e"),
        ("test.store.events", b"f"),
    ]


async def test_deferred_outbox_writes_nothing_when_its_block_raises(store: Store) -> None:
    async with store.transaction() as tx:
        with pytest.raises(RuntimeError, match="no"):
            async with deferred_outbox(tx) as outbox:
                await outbox.enqueue("test.store.events", envelope(1))
                raise RuntimeError("no")
        await tx.enqueue("test.store.events", envelope(2))  # the transaction goes on, and commits
    assert [OnexEnvelopeV1.from_json(r["value"]).payload["n"] for r in await outbox_rows(store)] == [2]


async def test_enqueue_refuses_a_bad_topic_before_writing(store: Store) -> None:
    async with store.transaction() as tx:
        with pytest.raises(UsageError, match="bad topic name 'no spaces allowed'"):
            await tx.enqueue("no spaces allowed", envelope())
    assert await outbox_rows(store) == []
