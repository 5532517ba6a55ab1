"""Replay LOBSTER sample days (real Nasdaq order flow) through crossbook's OrderBook.

The data and its caveats are described in ``<repo>/../shared/data/lobster/README.md``. A LOBSTER
day is a message file (one order event per row) and an orderbook file (the visible top-N levels
after each message). :class:`LobsterReplay` drives an ``OrderBook`` with the messages and compares
the book with the snapshot after every one of them:

* the book is seeded from snapshot row 0 (the book before message 0 is unknown): one anonymous
  order per level, with ids above the Nasdaq id space;
* type 1 (submit) is a LIMIT DAY order; type 2 (partial cancel) a replace down (FIX total qty);
  type 3 (delete) a cancel; type 4 (visible execution) an opposite-side IOC at that price and size
  that must fill exactly the referenced order; types 5-7 (hidden execution, cross, halt) change
  nothing. Messages about ids the book does not hold (orders from before the window opened or
  from before their level last left the window) act on the level's anonymous order;
* the depth-N file is filtered, so after every row the replay drops what lies beyond the
  snapshot's N-th price and takes a level that slides in at position N (a "refill") from the
  snapshot as a new anonymous order;
* a type 4 whose order is not at the head of its price level in the book is an out-of-order
  execution (mostly Nasdaq reporting a younger order first in a sweep; see
  :meth:`LobsterReplay._classify_out_of_order`): it is applied as a reduction of that order,
  counted and classified, for the test to hold against the documented counts.

Everything that disagrees is recorded (a mismatched row resyncs its side from the snapshot so one
problem is reported once, not on every following row).
"""
from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossbook.core import OrderBook, OrdType, Side, Status, TimeInForce

# Nasdaq order references in these files are below 2**32; the replay's own orders live far above.
ANON_ID_BASE = 1 << 40     # anonymous volume: seeded levels, refills, resyncs
TAKER_ID_BASE = 1 << 41    # the IOC orders that stand in for the aggressors of type-4 executions

SUBMIT, PARTIAL_CANCEL, DELETE, EXECUTE, HIDDEN_EXECUTE, CROSS, HALT = 1, 2, 3, 4, 5, 6, 7
EMPTY_ASK, EMPTY_BID = 9999999999, -9999999999  # LOBSTER's padding of empty levels

_ZIP_NAME = re.compile(r"LOBSTER_SampleFile_(?P<ticker>[A-Z]+)_(?P<date>[\d-]+)_(?P<levels>\d+)\.zip$")


def shared_dir() -> Path:
    """``<repo>/../shared``: read-only reference material next to the repository."""
    return Path(__file__).resolve().parents[2].parent / "shared"


def lobster_dir() -> Path:
    return shared_dir() / "data" / "lobster"


def sample_zips() -> list[Path]:
    """Every LOBSTER sample zip present, deepest book first per ticker."""
    found = [p for p in lobster_dir().glob("LOBSTER_SampleFile_*.zip") if _ZIP_NAME.search(p.name)]
    return sorted(found, key=lambda p: (_ZIP_NAME.search(p.name)["ticker"], -int(_ZIP_NAME.search(p.name)["levels"])))


@dataclass
class LobsterDay:
    name: str                 # e.g. GOOG_2012-06-21_10
    levels: int               # N, the depth of the orderbook file
    times: np.ndarray         # message times as decimal text (seconds after midnight)
    messages: np.ndarray      # int64 rows: type, order id, size, price, direction
    book: np.ndarray          # int64 rows: ask px, ask size, bid px, bid size per level (4N columns)

    def __len__(self) -> int:
        return len(self.messages)


def load_day(path: Path) -> LobsterDay:
    """Read one sample zip in place (no unpacking)."""
    match = _ZIP_NAME.search(path.name)
    if match is None:
        raise ValueError(f"{path.name} is not a LOBSTER sample file name")
    levels = int(match["levels"])
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        message_name = next(n for n in names if re.search(rf"_message_{levels}\.csv$", n))
        book_name = next(n for n in names if re.search(rf"_orderbook_{levels}\.csv$", n))
        message_bytes = archive.read(message_name)
        book_bytes = archive.read(book_name)
    # Times stay text: one AMZN row carries a float artefact, and only file order matters here.
    times = np.loadtxt(io.BytesIO(message_bytes), delimiter=",", dtype=str, usecols=(0,))
    messages = np.loadtxt(io.BytesIO(message_bytes), delimiter=",", dtype=np.int64, usecols=(1, 2, 3, 4, 5))
    book = np.loadtxt(io.BytesIO(book_bytes), delimiter=",", dtype=np.int64, ndmin=2)
    if book.shape != (len(messages), 4 * levels):
        raise ValueError(f"{path.name}: orderbook shape {book.shape} does not fit {len(messages)} messages x {levels} levels")
    name = f"{match['ticker']}_{match['date']}_{levels}"
    return LobsterDay(name, levels, times, messages, book)


@dataclass
class OutOfOrderExecution:
    row: int
    time: str
    order_id: int
    size: int
    price: int
    ahead: list[int]          # the orders the book holds ahead of it at that price, oldest first
    kind: str = ""            # NON_FIFO, BEHIND_ANONYMOUS or BEHIND_UNREFERENCED (see classify)


@dataclass
class ReplayReport:
    name: str
    rows: int = 0
    rows_checked: int = 0
    levels_checked: int = 0          # levels compared exactly (price and size)
    refilled_levels: int = 0         # levels taken from the snapshot (slid in at position N)
    executions_matched: int = 0      # type-4 IOCs that filled exactly the referenced order
    executions_anonymous: int = 0    # ... of which against anonymous volume (unknown ids)
    out_of_order: list[OutOfOrderExecution] = field(default_factory=list)
    mismatched_rows: int = 0
    bad_messages: int = 0            # messages the book could not apply as the file says
    problems: list[str] = field(default_factory=list)   # the first few mismatches / bad messages

    def out_of_order_count(self, kind: str) -> int:
        return sum(1 for ex in self.out_of_order if ex.kind == kind)

    def summary(self) -> str:
        kinds = ", ".join(
            f"{self.out_of_order_count(k)} {k.lower()}" for k in ("NON_FIFO", "BEHIND_ANONYMOUS", "BEHIND_UNREFERENCED")
        )
        return (
            f"{self.name}: {self.rows_checked:,}/{self.rows:,} rows checked, {self.levels_checked:,} levels "
            f"exact, {self.refilled_levels:,} refilled, {self.executions_matched:,} executions matched by IOC "
            f"({self.executions_anonymous:,} against anonymous volume), {len(self.out_of_order)} out-of-order "
            f"({kinds}), {self.mismatched_rows} mismatched rows, {self.bad_messages} bad messages"
        )

    def note(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)


class LobsterReplay:
    """Drives one ``OrderBook`` with a LOBSTER day; :meth:`run` returns the :class:`ReplayReport`."""

    def __init__(self, day: LobsterDay):
        self.day = day
        self.n = day.levels
        self.book = OrderBook(capacity=1 << 14)
        # The FIFO of every level the book holds (ids in arrival order): it tells whether a
        # referenced order is at the head and which orders to drop when a level leaves the window.
        self.queues: dict[int, dict[int, list[int]]] = {Side.BUY: {}, Side.SELL: {}}
        self.anon: dict[tuple[int, int], int] = {}   # (side, price) -> live anonymous order id
        self.next_anon = ANON_ID_BASE
        self.next_taker = TAKER_ID_BASE
        self.report = ReplayReport(day.name, rows=len(day))

    # ---- the run -----------------------------------------------------------------------------

    def run(self) -> ReplayReport:
        day, rep = self.day, self.report
        messages = day.messages.tolist()
        self._seed(day.book[0].tolist(), messages[0])
        prev_edges = self._edges(day.book[0].tolist())
        for k in range(1, len(messages)):
            typ, oid, size, price, direction = messages[k]
            side = Side.BUY if direction == 1 else Side.SELL
            if typ == SUBMIT:
                self._submit(k, oid, side, price, size)
            elif typ == PARTIAL_CANCEL:
                self._reduce(k, oid, side, price, size, delete=False)
            elif typ == DELETE:
                self._reduce(k, oid, side, price, size, delete=True)
            elif typ == EXECUTE:
                self._execute(k, oid, side, price, size)
            elif typ not in (HIDDEN_EXECUTE, CROSS, HALT):
                rep.bad_messages += 1
                rep.note(f"row {k}: unknown message type {typ}")
            row = day.book[k].tolist()
            self._check(k, row, prev_edges)
            prev_edges = self._edges(row)
            rep.rows_checked += 1
        self._classify_out_of_order()
        return rep

    def _classify_out_of_order(self) -> None:
        """Sort the out-of-order executions the way the data's README counts them.

        NON_FIFO: a Nasdaq order ahead of the executed one is referenced by a later message, so it
        was provably still resting: Nasdaq really reported a younger order first (the README's
        documented same-timestamp sweeps). BEHIND_ANONYMOUS: only the replay's anonymous volume
        (orders from before the window, of unknown age) and unreferenced orders were ahead.
        BEHIND_UNREFERENCED: only orders never referenced again were ahead; they may have left
        silently outside the window, so FIFO is not provably broken.
        """
        last_reference: dict[int, int] = {}
        for row, oid in enumerate(self.day.messages[:, 1].tolist()):
            last_reference[oid] = row
        for ex in self.report.out_of_order:
            known = [oid for oid in ex.ahead if oid < ANON_ID_BASE]
            if any(last_reference.get(oid, -1) > ex.row for oid in known):
                ex.kind = "NON_FIFO"
            elif len(known) < len(ex.ahead):
                ex.kind = "BEHIND_ANONYMOUS"
            else:
                ex.kind = "BEHIND_UNREFERENCED"

    # ---- seeding and anonymous volume --------------------------------------------------------

    def _seed(self, row: list[int], message0: list[int]) -> None:
        typ, oid, size, price, direction = message0
        first_side = Side.BUY if direction == 1 else Side.SELL
        for side in (Side.SELL, Side.BUY):
            for price_i, qty in self._levels_of(row, side):
                # Message 0 is already inside row 0: if it added an order, seed the level without
                # it and add it behind, so later references to its id find it.
                own = size if (typ == SUBMIT and side == first_side and price_i == price) else 0
                if qty - own > 0:
                    self._add_anon(side, price_i, qty - own)
                if own:
                    self._add(oid, side, price_i, own)

    def _add_anon(self, side: int, price: int, qty: int) -> None:
        oid = self.next_anon
        self.next_anon += 1
        self._add(oid, side, price, qty)
        self.anon[(side, price)] = oid

    def _add(self, oid: int, side: int, price: int, qty: int) -> bool:
        res = self.book.submit(oid, side, price, qty, OrdType.LIMIT, TimeInForce.DAY)
        if res.status != Status.RESTING or res.fills:
            return False
        self.queues[side].setdefault(price, []).append(oid)
        return True

    def _forget(self, oid: int, side: int, price: int) -> None:
        queue = self.queues[side].get(price)
        if queue is not None and oid in queue:
            queue.remove(oid)
            if not queue:
                del self.queues[side][price]
        if self.anon.get((side, price)) == oid:
            del self.anon[(side, price)]

    def _target(self, oid: int, side: int, price: int) -> int | None:
        """The book order a message about ``oid`` acts on: the order itself while the book holds
        it at that price, else the level's anonymous volume."""
        state = self.book.order(oid)
        if state is not None and state.side == side and state.price == price:
            return oid
        return self.anon.get((side, price))

    # ---- messages ----------------------------------------------------------------------------

    def _submit(self, k: int, oid: int, side: int, price: int, size: int) -> None:
        if not self._add(oid, side, price, size):
            self._bad(k, f"submit {oid} {size}@{price} did not rest cleanly")

    def _reduce(self, k: int, oid: int, side: int, price: int, size: int, *, delete: bool) -> None:
        target = self._target(oid, side, price)
        state = self.book.order(target) if target is not None else None
        if state is None or state.leaves < size:
            self._bad(k, f"{'delete' if delete else 'cancel'} {oid} {size}@{price}: book holds {state}")
            return
        if delete and target == oid and state.leaves != size:
            self._bad(k, f"delete {oid} {size}@{price} but {state.leaves} left")
        if state.leaves == size or (delete and target == oid):
            self.book.cancel(target)
            self._forget(target, side, price)
        else:
            res = self.book.replace(target, state.qty - size, price)  # FIX: new total quantity
            if res.status == Status.REJECTED or res.fills or self.book.order(target).leaves != state.leaves - size:
                self._bad(k, f"replace-down of {target} by {size} gave {res!r}")

    def _execute(self, k: int, oid: int, side: int, price: int, size: int) -> None:
        rep = self.report
        target = self._target(oid, side, price)
        state = self.book.order(target) if target is not None else None
        if state is None or state.leaves < size:
            self._bad(k, f"execution {oid} {size}@{price}: book holds {state}")
            return
        queue = self.queues[side].get(price, [])
        if queue[0] != target:
            # Nasdaq executed a younger order first: keep the book equal to the venue's by
            # reducing the named order itself, and report the execution.
            rep.out_of_order.append(OutOfOrderExecution(
                k, str(self.day.times[k]), oid, size, price, queue[:queue.index(target)]))
            if state.leaves == size:
                self.book.cancel(target)
                self._forget(target, side, price)
            else:
                self.book.replace(target, state.qty - size, price)
            return
        taker = self.next_taker
        self.next_taker += 1
        res = self.book.submit(taker, Side.SELL if side == Side.BUY else Side.BUY, price, size,
                               OrdType.LIMIT, TimeInForce.IOC)
        fills = [tuple(f) for f in res.fills]
        if fills != [(target, taker, price, size)] or res.status != Status.FILLED:
            self._bad(k, f"execution {oid} {size}@{price}: IOC gave {res.status!r} fills {fills}, expected maker {target}")
        else:
            rep.executions_matched += 1
            rep.executions_anonymous += target != oid
        if self.book.order(target) is None:
            self._forget(target, side, price)

    def _bad(self, k: int, text: str) -> None:
        self.report.bad_messages += 1
        self.report.note(f"row {k} (message {self.day.messages[k].tolist()}): {text}")

    # ---- the comparison after every row ------------------------------------------------------

    def _levels_of(self, row: list[int], side: int) -> list[tuple[int, int]]:
        offset = 0 if side == Side.SELL else 2
        empty = EMPTY_ASK if side == Side.SELL else EMPTY_BID
        out = []
        for i in range(self.n):
            px, qty = row[4 * i + offset], row[4 * i + offset + 1]
            if qty == 0 and px == empty:
                break
            out.append((px, qty))
        return out

    def _edges(self, row: list[int]) -> dict[int, int | None]:
        """The N-th price of each side in a snapshot (None when the side has fewer levels)."""
        edges = {}
        for side in (Side.SELL, Side.BUY):
            levels = self._levels_of(row, side)
            edges[side] = levels[-1][0] if len(levels) == self.n else None
        return edges

    def _check(self, k: int, row: list[int], prev_edges: dict[int, int | None]) -> None:
        rep = self.report
        mismatch = False
        for side in (Side.SELL, Side.BUY):
            snap = self._levels_of(row, side)
            ours = [(px, qty) for px, qty, _count in self.book.depth(side, self.n + 1)]
            verifiable = min(len(ours), len(snap))
            ok = ours[:verifiable] == snap[:verifiable]
            refills = snap[len(ours):]
            if ok and refills:
                # Only the level at position N may slide in from beyond the old window, and it
                # must lie beyond the old edge.
                edge = prev_edges[side]
                worse = lambda px: px > edge if side == Side.SELL else px < edge  # noqa: E731
                ok = len(ours) == self.n - 1 and edge is not None and worse(refills[0][0])
            if ok and len(ours) > len(snap) and len(snap) < self.n:
                ok = False  # the venue's book is shallower than N: ours must not be deeper
            if not ok:
                mismatch = True
                rep.note(f"row {k} side {side.name}: book {ours[:self.n]} != snapshot {snap}")
                self._resync(side, snap)
                continue
            rep.levels_checked += verifiable
            for px, qty in refills:
                self._add_anon(side, px, qty)
                rep.refilled_levels += 1
            for px, _qty in ours[len(snap):]:
                self._drop_level(side, px)
        if mismatch:
            rep.mismatched_rows += 1

    def _drop_level(self, side: int, price: int) -> None:
        for oid in self.queues[side].pop(price, []):
            self.book.cancel(oid)
        self.anon.pop((side, price), None)

    def _resync(self, side: int, snap: list[tuple[int, int]]) -> None:
        for price in list(self.queues[side]):
            self._drop_level(side, price)
        for px, qty in snap:
            self._add_anon(side, px, qty)
