"""YoungOnlyGC: young collections freeze their survivors, cycles that die young are still
collected, older generations are never collected automatically, uninstall restores."""
from __future__ import annotations

import gc
import weakref

import pytest

from crossbook.app.gcpolicy import YoungOnlyGC


class Node:
    def __init__(self) -> None:
        self.other: object = None


@pytest.fixture
def policy():
    before = gc.get_threshold()
    p = YoungOnlyGC(threshold=500)
    p.install()
    yield p
    p.uninstall()
    assert gc.get_threshold() == before


def test_survivors_of_a_young_collection_are_frozen(policy):
    assert gc.get_threshold()[0] == 500 and gc.get_threshold()[1] >= 1 << 30
    frozen = gc.get_freeze_count()
    kept = [Node() for _ in range(2_000)]   # survivors: several young collections happen
    assert policy.collections >= 2
    assert gc.get_freeze_count() >= frozen + 1_500
    assert gc.get_count()[1] == 0 and gc.get_count()[2] == 0   # nothing reaches the old generations
    del kept


def test_cycles_that_die_before_a_young_collection_are_collected(policy):
    a, b = Node(), Node()
    a.other, b.other = b, a
    probe = weakref.ref(a)
    del a, b                       # unreachable cycle: only the collector can free it
    start = policy.collections
    churn = []
    while policy.collections == start:
        churn.append(Node())       # allocate until the next young collection runs
    assert probe() is None


def test_uninstall_restores_and_a_second_policy_shares_the_process():
    before = gc.get_threshold()
    first, second = YoungOnlyGC(2_000), YoungOnlyGC(1_000)
    first.install()
    second.install()
    assert gc.get_threshold()[0] == 1_000
    first.uninstall()
    assert gc.get_threshold()[0] == 1_000 and second.installed and not first.installed
    second.uninstall()
    assert gc.get_threshold() == before
    assert first._after_collection not in gc.callbacks and second._after_collection not in gc.callbacks


@pytest.mark.parametrize("bad", [0, 99, 1.5, True, "1000"])
def test_bad_threshold_is_refused(bad):
    with pytest.raises(ValueError, match="gc threshold"):
        YoungOnlyGC(bad)
