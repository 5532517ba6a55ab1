"""crossbook.core.kernels: the seeded order-flow generator and the fill analytics.

Analytics are checked against plain NumPy / pure-Python computations; the generator for
determinism, resumability, its documented mix and arrival statistics, and against the real book.
Each kernel's pure-Python path (``.py_func``) runs once and must agree with the compiled one.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from crossbook.core import COMMAND_DTYPE, FILL_DTYPE, OrderBook, OrdType, Reason, Side, TimeInForce
from crossbook.core import OP_CANCEL, OP_REPLACE, OP_SUBMIT
from crossbook.core import kernels
from crossbook.core.kernels import (
    BAR_DTYPE,
    FlowMix,
    OrderFlowGenerator,
    generate_order_flow,
    ohlcv_bars,
    traded_volume_by_owner,
    vwap,
)


def binomial_ok(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


# ---------------------------------------------------------------------------------------------
# generator: contract with the core
# ---------------------------------------------------------------------------------------------


def test_generator_uses_the_core_enum_values():
    assert (kernels._OP_SUBMIT, kernels._OP_CANCEL, kernels._OP_REPLACE) == (OP_SUBMIT, OP_CANCEL, OP_REPLACE)
    assert (kernels._BUY, kernels._SELL) == (Side.BUY, Side.SELL)
    assert (kernels._MARKET, kernels._LIMIT) == (OrdType.MARKET, OrdType.LIMIT)
    assert kernels._DAY == TimeInForce.DAY


def test_generated_commands_have_the_core_command_dtype():
    commands = generate_order_flow(100, seed=1)
    assert commands.dtype == np.dtype(COMMAND_DTYPE)
    assert commands.shape == (100,)


def test_book_accepts_every_generated_command():
    """The only non-fill outcomes are the expected ones: IOC/market remainders and cancels of
    orders that already traded away (the generator has no book, like a late cancel)."""
    gen = OrderFlowGenerator(11, mix=FlowMix(passive=0.55, cancel=0.2, aggressive=0.1, market=0.05, replace=0.1))
    commands = np.concatenate([gen.generate(2_000, mix=FlowMix.passive_only()).commands, gen.generate(20_000).commands])
    fills, ended = OrderBook().process(commands)
    allowed = {Reason.USER_CANCEL, Reason.TOO_LATE, Reason.MARKET_REMAINDER, Reason.IOC_REMAINDER,
               Reason.REPLACED_TO_FILLED}
    reasons = {Reason(int(r)) for r in np.unique(ended["reason"])}
    assert reasons <= allowed, reasons - allowed
    assert len(fills) > 1_000
    # Too-late answers come only from cancels/replaces of orders that traded away.
    unknown = ended[ended["reason"] == Reason.TOO_LATE]
    assert len(unknown) > 0
    assert np.all(np.isin(commands["op"][unknown["cmd_index"]], [OP_CANCEL, OP_REPLACE]))
    traded = np.concatenate([fills["maker_id"], fills["taker_id"]])
    assert np.all(np.isin(unknown["order_id"], traded))


# ---------------------------------------------------------------------------------------------
# generator: determinism and resumability
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_stream():
    a = OrderFlowGenerator(1234).generate(5_000)
    b = OrderFlowGenerator(1234).generate(5_000)
    assert np.array_equal(a.commands, b.commands)
    assert np.array_equal(a.timestamps, b.timestamps)


def test_different_seeds_give_different_streams():
    a = generate_order_flow(1_000, seed=1)
    b = generate_order_flow(1_000, seed=2)
    assert not np.array_equal(a["price"], b["price"])


def test_chunks_continue_the_stream_exactly():
    whole = OrderFlowGenerator(99, cancel_window=50).generate(3_000)
    gen = OrderFlowGenerator(99, cancel_window=50)
    parts = [gen.generate(n) for n in (1, 499, 0, 1_000, 1_500)]
    assert np.array_equal(np.concatenate([p.commands for p in parts]), whole.commands)
    assert np.array_equal(np.concatenate([p.timestamps for p in parts]), whole.timestamps)
    assert gen.clock_ns == whole.timestamps[-1]


def test_mix_override_applies_to_one_chunk_only():
    gen = OrderFlowGenerator(5)
    first = gen.generate(1_000, mix=FlowMix.passive_only()).commands
    assert np.all(first["op"] == OP_SUBMIT) and np.all(first["ord_type"] == OrdType.LIMIT)
    assert gen.live_count == 1_000
    second = gen.generate(2_000).commands
    assert np.count_nonzero(second["op"] == OP_CANCEL) > 300


# ---------------------------------------------------------------------------------------------
# generator: statistics and invariants
# ---------------------------------------------------------------------------------------------


def classify(commands, mid: int):
    """Event kind of every command of a stream generated with a fixed mid (volatility 0)."""
    submit = commands["op"] == OP_SUBMIT
    market = submit & (commands["ord_type"] == OrdType.MARKET)
    limit = submit & (commands["ord_type"] == OrdType.LIMIT)
    buy = commands["side"] == Side.BUY
    through = np.where(buy, commands["price"] > mid, commands["price"] < mid)
    return {
        "passive": int(np.count_nonzero(limit & ~through)),
        "aggressive": int(np.count_nonzero(limit & through)),
        "market": int(np.count_nonzero(market)),
        "cancel": int(np.count_nonzero(commands["op"] == OP_CANCEL)),
        "replace": int(np.count_nonzero(commands["op"] == OP_REPLACE)),
    }


@pytest.mark.parametrize(
    "mix",
    [FlowMix(), FlowMix(passive=0.5, cancel=0.2, aggressive=0.1, market=0.05, replace=0.15)],
    ids=["default", "with-replaces"],
)
def test_mix_ratios_follow_the_flow_mix(mix):
    n = 100_000
    commands = generate_order_flow(n, seed=3, volatility=0.0, mid=50_000, mix=mix)
    counts = classify(commands, 50_000)
    assert sum(counts.values()) == n
    weights = {"passive": mix.passive, "aggressive": mix.aggressive, "market": mix.market,
               "cancel": mix.cancel, "replace": mix.replace}
    total = sum(weights.values())
    for kind, w in weights.items():
        assert binomial_ok(counts[kind], n, w / total), (kind, counts[kind], n * w / total)


def test_default_mix_is_the_benchmark_mix():
    assert FlowMix() == FlowMix(passive=0.60, cancel=0.25, aggressive=0.10, market=0.05, replace=0.0)


def test_flow_mix_rejects_bad_weights():
    with pytest.raises(ValueError, match="FlowMix.cancel"):
        FlowMix(cancel=-0.1)
    with pytest.raises(ValueError, match="FlowMix.market"):
        FlowMix(market=float("nan"))
    with pytest.raises(ValueError, match="positive weight"):
        FlowMix(passive=0, cancel=0, aggressive=0, market=0, replace=0)


def test_arrivals_are_poisson_at_the_requested_rate():
    rate = 5_000.0
    chunk = OrderFlowGenerator(8, rate=rate).generate(100_000)
    gaps = np.diff(chunk.timestamps)
    assert np.all(gaps >= 0)
    mean_gap = gaps.mean()
    assert abs(mean_gap - 1e9 / rate) < 0.02 * 1e9 / rate
    # Exponential gaps: standard deviation equals the mean.
    assert abs(gaps.std() / mean_gap - 1.0) < 0.03
    # Counts in fixed windows: Poisson, so the variance equals the mean (dispersion index ~1).
    window_ns = 2_000_000  # 10 arrivals expected per window
    counts = np.bincount(chunk.timestamps // window_ns)[1:-1]
    assert abs(counts.mean() - 10.0) < 0.3
    assert abs(counts.var() / counts.mean() - 1.0) < 0.1


def test_ids_prices_sizes_and_owners_are_well_formed():
    gen = OrderFlowGenerator(21, first_order_id=1_000, lot_size=10, n_owners=3, mid=200,
                             mix=FlowMix(passive=0.5, cancel=0.2, aggressive=0.1, market=0.05, replace=0.15))
    commands = gen.generate(30_000).commands
    submit = commands["op"] == OP_SUBMIT
    ids = commands["order_id"][submit]
    assert np.array_equal(ids, np.arange(1_000, 1_000 + len(ids)))
    assert gen.next_order_id == 1_000 + len(ids)
    assert np.all(commands["qty"][submit] % 10 == 0) and np.all(commands["qty"][submit] >= 10)
    limit = commands["ord_type"] == OrdType.LIMIT
    assert np.all(commands["price"][submit & limit] >= 1)
    assert np.all(commands["price"][submit & ~limit] == 0)
    assert set(np.unique(commands["owner"][submit])) == {1, 2, 3}
    # Cancels and replaces only reference passive orders submitted earlier and not cancelled yet.
    live = {}
    for c in commands:
        oid = int(c["order_id"])
        if c["op"] == OP_SUBMIT:
            if c["ord_type"] == OrdType.LIMIT:
                live[oid] = int(c["qty"])
        elif c["op"] == OP_CANCEL:
            assert oid in live
            del live[oid]
        else:
            assert oid in live
            assert 10 <= c["qty"] <= live[oid] and c["qty"] % 10 == 0 and c["price"] >= 1
            live[oid] = int(c["qty"])


def test_mid_walk_moves_with_volatility_and_stays_positive():
    still = OrderFlowGenerator(4, volatility=0.0, mid=1_000)
    still.generate(1_000)
    assert still.mid == 1_000.0
    moving = OrderFlowGenerator(4, volatility=50.0, mid=3, rate=100.0)
    commands = moving.generate(5_000).commands
    assert moving.mid != 3.0 and moving.mid >= 1.5
    assert np.all(commands["price"][commands["ord_type"] == OrdType.LIMIT] >= 1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"seed": 1, "mid": 0}, ValueError, "mid"),
        ({"seed": 1, "rate": 0.0}, ValueError, "rate"),
        ({"seed": 1, "mean_lots": 0.5}, ValueError, "mean_lots"),
        ({"seed": 1, "volatility": -1.0}, ValueError, "volatility"),
        ({"seed": 1, "depth_ticks": float("inf")}, ValueError, "depth_ticks"),
        ({"seed": 1, "lot_size": 0}, ValueError, "lot_size"),
        ({"seed": 1, "cancel_window": 0}, ValueError, "cancel_window"),
        ({"seed": 1, "mix": {"passive": 1.0}}, TypeError, "FlowMix"),
    ],
)
def test_generator_rejects_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        OrderFlowGenerator(**kwargs)


def test_generate_rejects_a_bad_count():
    gen = OrderFlowGenerator(1)
    with pytest.raises(ValueError, match="n must be >= 0"):
        gen.generate(-1)
    with pytest.raises(TypeError, match="n must be an int"):
        gen.generate(2.0)


# ---------------------------------------------------------------------------------------------
# analytics
# ---------------------------------------------------------------------------------------------


def random_fills(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fills = np.zeros(n, dtype=FILL_DTYPE)
    fills["cmd_index"] = np.sort(rng.integers(0, 4 * n + 1, n))
    fills["maker_id"] = rng.integers(1, 50, n)
    fills["taker_id"] = rng.integers(1, 50, n)
    fills["price"] = rng.integers(990, 1_010, n)
    fills["qty"] = rng.integers(1, 500, n)
    return fills


def test_vwap_matches_numpy():
    fills = random_fills(10_000)
    expected = (fills["price"] * fills["qty"]).sum() / fills["qty"].sum()
    assert vwap(fills) == pytest.approx(expected, rel=1e-12)


def test_vwap_of_no_fills_is_nan():
    assert math.isnan(vwap(np.zeros(0, dtype=FILL_DTYPE)))


def reference_bars(keys, fills):
    bars = {}
    for key, price, qty in zip(keys, fills["price"].tolist(), fills["qty"].tolist()):
        b = bars.setdefault(key, {"open": price, "high": price, "low": price, "close": price,
                                  "volume": 0, "trades": 0, "notional": 0})
        b["high"] = max(b["high"], price)
        b["low"] = min(b["low"], price)
        b["close"] = price
        b["volume"] += qty
        b["trades"] += 1
        b["notional"] += price * qty
    return bars


def assert_bars_equal(bars, expected):
    assert bars.dtype == BAR_DTYPE
    assert list(bars["start"]) == sorted(expected)
    for row in bars:
        e = expected[int(row["start"])]
        for field in ("open", "high", "low", "close", "volume", "trades"):
            assert row[field] == e[field], field
        assert row["vwap"] == pytest.approx(e["notional"] / e["volume"], rel=1e-12)


def test_time_bars_match_a_python_grouping():
    fills = random_fills(5_000, seed=1)
    timestamps = np.cumsum(np.random.default_rng(2).integers(0, 3_000_000, 4 * 5_000 + 1))
    bar_ns, origin = 1_000_000_000, 123
    bars = ohlcv_bars(fills, timestamps=timestamps, bar_ns=bar_ns, origin_ns=origin)
    times = timestamps[fills["cmd_index"]].tolist()
    keys = [origin + ((t - origin) // bar_ns) * bar_ns for t in times]
    assert_bars_equal(bars, reference_bars(keys, fills))
    assert bars["volume"].sum() == fills["qty"].sum()


def test_count_bars_match_a_python_grouping():
    fills = random_fills(1_003, seed=3)
    bars = ohlcv_bars(fills, fills_per_bar=100)
    assert len(bars) == 11 and bars["trades"][-1] == 3
    keys = [(i // 100) * 100 for i in range(len(fills))]
    assert_bars_equal(bars, reference_bars(keys, fills))


def test_bars_of_no_fills_are_empty():
    assert len(ohlcv_bars(np.zeros(0, dtype=FILL_DTYPE), fills_per_bar=10)) == 0


def test_bars_reject_ambiguous_or_inconsistent_input():
    fills = random_fills(10)
    ts = np.arange(100, dtype=np.int64)
    with pytest.raises(ValueError, match="either"):
        ohlcv_bars(fills, timestamps=ts, bar_ns=10, fills_per_bar=3)
    with pytest.raises(ValueError, match="bar_ns"):
        ohlcv_bars(fills, timestamps=ts)
    with pytest.raises(ValueError, match="give timestamps"):
        ohlcv_bars(fills)
    with pytest.raises(ValueError, match="cmd_index outside"):
        ohlcv_bars(fills, timestamps=ts[:3], bar_ns=10)
    with pytest.raises(ValueError, match="must not decrease"):
        ohlcv_bars(fills, timestamps=ts[::-1].copy(), bar_ns=10)
    with pytest.raises(ValueError, match="bar_ns must be >= 1"):
        ohlcv_bars(fills, timestamps=ts, bar_ns=0)
    with pytest.raises(TypeError, match="FILL_DTYPE"):
        ohlcv_bars(np.zeros(3), fills_per_bar=1)
    with pytest.raises(TypeError, match="lacks field"):
        vwap(np.zeros(3, dtype=[("price", "i8")]))


def test_volume_by_owner_matches_python_with_a_dense_map():
    fills = random_fills(2_000, seed=4)
    owner_of = np.random.default_rng(5).integers(0, 6, 50)
    owner_of[0] = -1  # id 0 never appears in the fills
    expected = defaultdict(int)
    for m, t, q in zip(fills["maker_id"].tolist(), fills["taker_id"].tolist(), fills["qty"].tolist()):
        expected[int(owner_of[m])] += q
        expected[int(owner_of[t])] += q
    result = traded_volume_by_owner(fills, owner_of)
    assert result.dtype == np.int64 and len(result) == owner_of.max() + 1
    assert {o: int(v) for o, v in enumerate(result) if v} == dict(expected)
    assert result.sum() == 2 * fills["qty"].sum()


def test_volume_by_owner_from_the_command_array_of_a_real_run():
    chunk = OrderFlowGenerator(6, n_owners=5).generate(20_000)
    fills, _ = OrderBook().process(chunk.commands)
    owner_of = np.full(chunk.commands["order_id"].max() + 1, -1)
    submits = chunk.commands[chunk.commands["op"] == OP_SUBMIT]
    owner_of[submits["order_id"]] = submits["owner"]
    by_commands = traded_volume_by_owner(fills, chunk.commands)
    assert np.array_equal(by_commands, traded_volume_by_owner(fills, owner_of))
    assert by_commands.sum() == 2 * fills["qty"].sum() > 0
    assert by_commands[0] == 0 and np.all(by_commands[1:] > 0)


def test_volume_by_owner_names_an_unmapped_id():
    fills = random_fills(5)
    fills["maker_id"][3] = 10_000
    with pytest.raises(ValueError, match="fill 3 .*maker 10000"):
        traded_volume_by_owner(fills, np.zeros(60, dtype=np.int64))
    commands = np.zeros(1, dtype=COMMAND_DTYPE)
    with pytest.raises(ValueError, match="no owner"):
        traded_volume_by_owner(fills, commands)
    with pytest.raises(TypeError, match="numpy array"):
        traded_volume_by_owner(fills, [1, 2, 3])
    with pytest.raises(TypeError, match="integer array"):
        traded_volume_by_owner(fills, np.zeros(60))


def test_analytics_on_generated_fills_agree_with_numpy():
    chunk = OrderFlowGenerator(12).generate(30_000)
    fills, _ = OrderBook().process(chunk.commands)
    assert vwap(fills) == pytest.approx((fills["price"] * fills["qty"]).sum() / fills["qty"].sum())
    bars = ohlcv_bars(fills, timestamps=chunk.timestamps, bar_ns=100_000_000)
    assert bars["volume"].sum() == fills["qty"].sum() and bars["trades"].sum() == len(fills)
    assert np.all(bars["low"] <= bars["open"]) and np.all(bars["open"] <= bars["high"])
    assert np.all(np.diff(bars["start"]) > 0)


# ---------------------------------------------------------------------------------------------
# the pure-Python path of every kernel (coverage, and agreement with the compiled code)
# ---------------------------------------------------------------------------------------------


def test_rng_kernels_python_path_matches_compiled():
    with np.errstate(over="ignore"):  # uint64 wrap-around is the algorithm; NumPy scalars warn
        for fn in (kernels._splitmix64_next, kernels._uniform, kernels._standard_normal):
            a, b = np.array([77], dtype=np.uint64), np.array([77], dtype=np.uint64)
            assert [fn.py_func(a) for _ in range(5)] == [fn(b) for _ in range(5)]
        for fn, arg in ((kernels._below, 7), (kernels._geometric, 2.5), (kernels._geometric, 0.0)):
            a, b = np.array([78], dtype=np.uint64), np.array([78], dtype=np.uint64)
            assert [fn.py_func(a, arg) for _ in range(5)] == [fn(b, arg) for _ in range(5)]


def test_flow_kernel_python_path_matches_compiled(monkeypatch):
    mix = FlowMix(passive=0.5, cancel=0.2, aggressive=0.1, market=0.05, replace=0.15)
    compiled = OrderFlowGenerator(31, cancel_window=8, mix=mix).generate(400)
    monkeypatch.setattr(kernels, "_generate_flow_into", kernels._generate_flow_into.py_func)
    with np.errstate(over="ignore"):
        python = OrderFlowGenerator(31, cancel_window=8, mix=mix).generate(400)
    assert np.array_equal(python.commands, compiled.commands)
    assert np.array_equal(python.timestamps, compiled.timestamps)


def test_analytics_kernels_python_path_matches_compiled():
    fills = random_fills(300, seed=9)
    price, qty = fills["price"].copy(), fills["qty"].copy()
    assert kernels._vwap.py_func(price, qty) == pytest.approx(kernels._vwap(price, qty))
    times = np.arange(300, dtype=np.int64) * 7
    assert np.array_equal(kernels._bar_keys_by_time.py_func(times, 50, 3), kernels._bar_keys_by_time(times, 50, 3))
    assert np.array_equal(kernels._bar_keys_by_count.py_func(300, 16), kernels._bar_keys_by_count(300, 16))
    keys = kernels._bar_keys_by_count(300, 16)
    outs = []
    for fn in (kernels._ohlcv_from_keys.py_func, kernels._ohlcv_from_keys):
        out = np.zeros(300, dtype=BAR_DTYPE)
        n = fn(keys, price, qty, out["start"], out["open"], out["high"], out["low"], out["close"],
               out["volume"], out["trades"], out["vwap"])
        outs.append(out[:n])
    assert np.array_equal(outs[0], outs[1])
    maker, taker = fills["maker_id"].copy(), fills["taker_id"].copy()
    owner_of = np.arange(50, dtype=np.int64) % 4
    v_py, v_nb = np.zeros(4, np.int64), np.zeros(4, np.int64)
    assert kernels._owner_volume_dense.py_func(maker, taker, qty, owner_of, v_py) == -1
    kernels._owner_volume_dense(maker, taker, qty, owner_of, v_nb)
    assert np.array_equal(v_py, v_nb)
    ids = np.arange(50, dtype=np.int64)
    s_py, s_nb = np.zeros(4, np.int64), np.zeros(4, np.int64)
    assert kernels._owner_volume_sorted.py_func(maker, taker, qty, ids, owner_of, s_py) == -1
    kernels._owner_volume_sorted(maker, taker, qty, ids, owner_of, s_nb)
    assert np.array_equal(s_py, s_nb) and np.array_equal(s_py, v_py)
