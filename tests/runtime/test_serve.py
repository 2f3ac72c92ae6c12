"""The serving process's policy: what ``onex up`` / ``onex run`` do to the process once the host has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from framework.runtime.serve import GC_GEN0_THRESHOLD, settle_gc


@pytest.fixture
def gc_state() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("gc_state")
def test_settle_gc_freezes_what_exists_and_collects_the_young_less_often() -> None:
    gc.unfreeze()
    built_at_start = {"a": [1, 2, 3]}  # a container the collector tracks
    assert gc.get_freeze_count() == 0
    _, gen1, gen2 = gc.get_threshold()
    settle_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, gen1, gen2)
    # What existed is out of the collector's generations (permanent); what comes later is collected as before.
    assert not any(o is built_at_start for o in gc.get_objects())
    later: list[object] = []
    later.append(later)  # a cycle, garbage once dropped
    assert any(o is later for o in gc.get_objects())
