"""Replay real Nasdaq order flow (LOBSTER samples in ../shared) through OrderBook.

Every message of every sample day goes through the book (see tests/core/lobster.py for the
mapping) and the top levels are compared with LOBSTER's snapshot after every message. The book
must reproduce the snapshots exactly: the same number of exactly checked and refilled levels as the
data's own validation (``validation_result.json``), no mismatched row, every visible execution
filled by its IOC against exactly the order it names, except the documented out-of-order ones.
GOOG level 10 is the main fixture (its window is the widest); the others run the same way.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("crossbook_tests_lobster", Path(__file__).with_name("lobster.py"))
lobster = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = lobster  # dataclasses look their module up by name
_spec.loader.exec_module(lobster)

pytestmark = pytest.mark.shared

MAIN_FIXTURE = "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
ALL_FILES = [
    MAIN_FIXTURE,
    "LOBSTER_SampleFile_GOOG_2012-06-21_5.zip",
    "LOBSTER_SampleFile_GOOG_2012-06-21_1.zip",
    "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip",
    "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip",
    "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip",
]
# Out-of-order executions may be at most this share of the visible executions (the README: FIFO
# holds for about 99.9% of known-id executions; anonymous volume adds a few uncertain ones).
MAX_OUT_OF_ORDER_SHARE = 0.005


def require_shared() -> Path:
    directory = lobster.lobster_dir()
    if not directory.is_dir():
        pytest.skip(f"LOBSTER samples not found at {directory} (the ../shared reference tree is absent)")
    return directory


def documented(name: str) -> dict:
    """The data's own validation result for one file (``validation_result.json``)."""
    ticker, date, levels = name.rsplit("_", 2)
    results = json.loads((lobster.lobster_dir() / "validation_result.json").read_text())
    return results[f"{ticker}_{date}_level{levels}"]


_REPORTS: dict[str, "lobster.ReplayReport"] = {}


def replay(file_name: str) -> "lobster.ReplayReport":
    path = require_shared() / file_name
    if not path.exists():
        pytest.skip(f"{path} is absent from the shared reference tree")
    if file_name not in _REPORTS:
        _REPORTS[file_name] = lobster.LobsterReplay(lobster.load_day(path)).run()
    return _REPORTS[file_name]


@pytest.mark.parametrize("file_name", ALL_FILES)
def test_replay_matches_every_snapshot(file_name):
    report = replay(file_name)
    print(report.summary())
    assert report.mismatched_rows == 0 and report.bad_messages == 0, "\n".join(report.problems)
    assert report.rows_checked == report.rows - 1  # row 0 seeds the book
    # The same levels are verifiable as in the data's own aggregate check, and all matched.
    book = documented(report.name)["book"]
    assert report.levels_checked == book["levels_checked"]
    assert report.refilled_levels == book["refilled_levels"]


@pytest.mark.parametrize("file_name", ALL_FILES)
def test_visible_executions_hit_the_named_order_except_documented_ones(file_name):
    report = replay(file_name)
    day_messages = lobster.load_day(lobster.lobster_dir() / file_name).messages
    executions = int((day_messages[1:, 0] == lobster.EXECUTE).sum())
    # Every type 4 after row 0 was either matched by its IOC against exactly the named order
    # (or, for ids from before the window, the level's anonymous volume) or is out of order.
    assert report.executions_matched + len(report.out_of_order) == executions
    orders = documented(report.name)["orders"]
    documented_non_fifo = orders["type4_known"] - orders["type4_fifo_head_provably_live"]
    assert report.out_of_order_count("NON_FIFO") <= documented_non_fifo
    assert len(report.out_of_order) <= MAX_OUT_OF_ORDER_SHARE * executions, report.summary()
    # The README's listed examples of non-FIFO sweeps are among the ones the replay found.
    listed = {ex["row"] for ex in orders["type4_fifo_violation_examples"]}
    assert listed <= {ex.row for ex in report.out_of_order}


def test_main_fixture_finds_exactly_the_documented_non_fifo_sweeps():
    report = replay(MAIN_FIXTURE)
    orders = documented(report.name)["orders"]
    examples = orders["type4_fifo_violation_examples"]
    assert len(examples) == orders["type4_known"] - orders["type4_fifo_head_provably_live"] == 5
    assert [(ex.row, ex.order_id, ex.size, ex.price) for ex in report.out_of_order] == [
        (e["row"], e["message"][2], e["message"][3], e["message"][4]) for e in examples
    ]
    assert all(ex.kind == "NON_FIFO" for ex in report.out_of_order)
    for ex, e in zip(report.out_of_order, examples):
        assert set(e["older_live_ids"]) <= set(ex.ahead)


def test_replay_detects_a_corrupted_message():
    """The comparison can fail: one delete made 1 share larger is caught on that row."""
    path = require_shared() / MAIN_FIXTURE
    day = lobster.load_day(path)
    n = 3_000
    day = lobster.LobsterDay(day.name, day.levels, day.times[:n], day.messages[:n].copy(), day.book[:n])
    clean = lobster.LobsterReplay(day).run()
    assert clean.mismatched_rows == 0 and clean.bad_messages == 0
    deletes = [k for k in range(1, n) if day.messages[k, 0] == lobster.DELETE]
    day.messages[deletes[10], 2] += 1
    corrupted = lobster.LobsterReplay(day).run()
    assert corrupted.bad_messages + corrupted.mismatched_rows >= 1
    assert any(f"row {deletes[10]} " in p for p in corrupted.problems)


def test_replay_detects_a_wrong_snapshot_level():
    path = require_shared() / MAIN_FIXTURE
    day = lobster.load_day(path)
    n = 3_000
    book = day.book[:n].copy()
    book[2_000, 4 * 6 + 1] += 100  # ask size at level 7, as in the README's mutation test
    day = lobster.LobsterDay(day.name, day.levels, day.times[:n], day.messages[:n], book)
    report = lobster.LobsterReplay(day).run()
    assert report.mismatched_rows >= 1
    assert report.problems[0].startswith("row 2000 side SELL")
