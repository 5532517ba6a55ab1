"""Shared benchmark machinery.

Every benchmark compares crossbook against a baseline *in the same process and run*, because this
machine is shared and noisy: absolute times drift, same-run ratios do not (much).

Two modes, chosen with ``--bench-mode``:

* ``full`` (``make bench``): realistic sizes; asserts the targets written in the issues and prints
  the comparison tables.
* ``short`` (``make test``, CI): small sizes; asserts a ratio *floor* set well below the measured
  value, so noise passes and a real regression of the hot path fails.

A benchmark reports its rows through the ``bench_table`` fixture and checks its ratios with
``bench_mode.check_ratio``; the tables are printed at the end of the session.
"""
from __future__ import annotations

import gc
import os
import platform
import time
from dataclasses import dataclass, field

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--bench-mode",
        choices=("short", "full"),
        default="full",
        help="short: small sizes and ratio floors (CI guard); full: real sizes and issue targets",
    )


@dataclass
class BenchMode:
    name: str

    @property
    def short(self) -> bool:
        return self.name == "short"

    def size(self, full: int, short: int) -> int:
        """Pick the problem size for this mode."""
        return short if self.short else full

    def check_ratio(self, what: str, ratio: float, *, target: float, floor: float) -> None:
        """Assert a same-run ratio (bigger is better): the issue's target in full mode, the
        regression floor in short mode."""
        bound = floor if self.short else target
        assert ratio >= bound, (
            f"{what}: ratio {ratio:.2f} is below the {'floor' if self.short else 'target'} {bound:.2f}"
        )


@dataclass
class BenchTable:
    """Rows of (table title -> [(label, value, unit, note)]) printed at the end of the session."""

    tables: dict[str, list[tuple[str, float, str, str]]] = field(default_factory=dict)

    def add(self, table: str, label: str, value: float, unit: str, note: str = "") -> None:
        self.tables.setdefault(table, []).append((label, value, unit, note))


_TABLE = BenchTable()


@pytest.fixture(scope="session")
def bench_mode(request) -> BenchMode:
    return BenchMode(request.config.getoption("--bench-mode"))


@pytest.fixture(scope="session")
def bench_table() -> BenchTable:
    return _TABLE


def best_time(fn, *, repeat: int = 5, number: int = 1) -> float:
    """Best wall time in seconds of ``number`` calls of ``fn`` over ``repeat`` rounds, GC off.

    The minimum is the least noisy estimate of what the code costs on a shared machine.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best = min(best, time.perf_counter() - t0)
        return best
    finally:
        if was_enabled:
            gc.enable()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _TABLE.tables:
        return
    tr = terminalreporter
    tr.section(f"crossbook benchmarks ({config.getoption('--bench-mode')} mode)")
    tr.write_line(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    for title, rows in _TABLE.tables.items():
        tr.write_line("")
        tr.write_line(title)
        width = max(len(r[0]) for r in rows)
        for label, value, unit, note in rows:
            tr.write_line(f"  {label:<{width}}  {value:>14,.2f} {unit:<10} {note}")
