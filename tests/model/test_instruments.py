"""Instrument master: exact price/tick conversion, lots, notional, FIX resolution, config, FX."""
from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossbook.core import MAX_PRICE, MAX_QTY
from crossbook.model.instruments import (
    DEFAULT_FX_RATES,
    DEFAULT_INSTRUMENTS,
    AssetClass,
    FxRates,
    Instrument,
    InstrumentConfigError,
    InstrumentMaster,
    LotSizeError,
    OffTickError,
    PriceError,
    UnknownInstrumentError,
)


@pytest.fixture(scope="module")
def master() -> InstrumentMaster:
    return InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)


def equity(**kw) -> Instrument:
    base = dict(symbol="XYZ", asset_class=AssetClass.EQUITY, tick_size=Decimal("0.01"), lot_size=1,
                multiplier=Decimal(1), currency="USD", venues=("V1",))
    base.update(kw)
    return Instrument(**base)


def cfg(**kw) -> dict:
    base = {"symbol": "XYZ", "asset_class": "equity", "tick_size": "0.01", "venues": ["V1"]}
    base.update(kw)
    return base


# ------------------------------------------------------------------------------------------------
# Defaults
# ------------------------------------------------------------------------------------------------

def test_default_instruments_cover_the_issue(master):
    keys = [i.key for i in master]
    assert keys == ["AAPL", "MSFT", "ESZ6", "AAPL 20261218 C200", "EUR/USD", "BTC-USD"]
    assert [i.index for i in master] == list(range(6))
    assert {i.asset_class for i in master} == set(AssetClass)
    for inst in master:
        assert inst.venues == ("VENUE-A", "VENUE-B")
        assert inst.default_venue == "VENUE-A"
        assert inst.reference_price is not None and inst.reference_ticks > 0
    aapl, msft = master.by_symbol("AAPL"), master.by_symbol("MSFT")
    for eq in (aapl, msft):
        assert (eq.asset_class, eq.tick_size, eq.currency, eq.security_type) == (
            AssetClass.EQUITY, Decimal("0.01"), "USD", "CS")
    es = master.by_symbol("ESZ6")
    assert (es.asset_class, es.multiplier, es.tick_size, es.maturity_month_year, es.security_type) == (
        AssetClass.FUTURE, Decimal(50), Decimal("0.25"), "202612", "FUT")
    opt = master.by_symbol("AAPL 20261218 C200")
    assert opt.symbol == "AAPL" and opt.underlying == "AAPL" and opt.put_or_call == 1
    assert (opt.strike, opt.expiry, opt.multiplier, opt.security_type) == (
        Decimal(200), dt.date(2026, 12, 18), Decimal(100), "OPT")
    fx = master.by_symbol("EUR/USD")
    assert (fx.asset_class, fx.tick_size, fx.lot_size, fx.security_type) == (
        AssetClass.FX_SPOT, Decimal("0.00001"), 1000, "FXSPOT")
    btc = master.by_symbol("BTC-USD")
    assert (btc.asset_class, btc.multiplier, btc.security_type) == (AssetClass.CRYPTO, Decimal("0.001"), "CRYPTO")
    # one BTC unit is 0.001 BTC: 500 units at 90,000.00 is 45,000 USD
    assert btc.notional(500, btc.price_to_ticks("90000.00")) == Decimal("45000")


def test_default_config_dicts_are_not_shared_state():
    a = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
    b = InstrumentMaster.from_config(DEFAULT_INSTRUMENTS)
    assert list(a) == list(b)
    assert FxRates(DEFAULT_FX_RATES).rate("EUR", "USD") == Decimal("1.08")


# ------------------------------------------------------------------------------------------------
# Prices and ticks
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,price,ticks", [
    ("AAPL", "230.01", 23001), ("AAPL", Decimal("0.01"), 1), ("AAPL", 5, 500), ("AAPL", "230.0100", 23001),
    ("ESZ6", "6000.25", 24001), ("ESZ6", "6000.75", 24003), ("ESZ6", "1E+3", 4000),
    ("EUR/USD", "1.08001", 108001), ("BTC-USD", "90000.01", 9000001), ("AAPL 20261218 C200", " 32.50 ", 3250),
])
def test_price_to_ticks_exact(master, key, price, ticks):
    inst = master.by_symbol(key)
    assert inst.price_to_ticks(price) == ticks
    assert inst.ticks_to_price(ticks) == Decimal(str(price).strip())


def test_off_tick_price_names_price_and_tick(master):
    es = master.by_symbol("ESZ6")
    with pytest.raises(OffTickError) as e:
        es.price_to_ticks("6000.10")
    msg = str(e.value)
    assert "6000.10" in msg and "0.25" in msg and "ESZ6" in msg and "6000.00" in msg and "6000.25" in msg
    assert isinstance(e.value, ValueError) and e.value.tick_size == Decimal("0.25")
    aapl = master.by_symbol("AAPL")
    for bad in ("230.001", "0.005", "230.0000000000000000000000000001"):
        with pytest.raises(OffTickError):
            aapl.price_to_ticks(bad)


@pytest.mark.parametrize("bad,exc,text", [
    (230.01, TypeError, "float"), (True, TypeError, "bool"), (None, TypeError, "NoneType"), ([1], TypeError, "list"),
    ("abc", ValueError, "not a decimal"), ("", ValueError, "not a decimal"), ("NaN", ValueError, "finite"),
    ("Infinity", ValueError, "finite"), ("0", PriceError, "positive"), ("-1.00", PriceError, "positive"),
    ("1E+30", PriceError, "too large"),
])
def test_bad_prices(master, bad, exc, text):
    with pytest.raises(exc, match=text):
        master.by_symbol("AAPL").price_to_ticks(bad)


def test_price_at_max_ticks(master):
    aapl = master.by_symbol("AAPL")
    top = aapl.ticks_to_price(MAX_PRICE)
    assert aapl.price_to_ticks(top) == MAX_PRICE
    with pytest.raises(PriceError):
        aapl.price_to_ticks(top + Decimal("0.01"))


def test_ticks_to_price_rejects_non_int(master):
    with pytest.raises(TypeError):
        master.by_symbol("AAPL").ticks_to_price(1.0)
    with pytest.raises(TypeError):
        master.by_symbol("AAPL").ticks_to_price(True)


@settings(max_examples=200, deadline=None)
@given(ticks=st.integers(1, MAX_PRICE), tick=st.sampled_from(["0.01", "0.25", "0.00001", "5", "0.0005", "12.5"]))
def test_round_trip_is_exact(ticks, tick):
    inst = equity(tick_size=Decimal(tick))
    price = inst.ticks_to_price(ticks)
    assert inst.price_to_ticks(price) == ticks
    assert inst.price_to_ticks(str(price)) == ticks
    # half a tick off is never accepted
    with pytest.raises(OffTickError):
        inst.price_to_ticks(price - Decimal(tick) / 2)


# ------------------------------------------------------------------------------------------------
# Quantities and notional
# ------------------------------------------------------------------------------------------------

def test_lot_size_check(master):
    fx = master.by_symbol("EUR/USD")
    fx.check_qty(1000)
    fx.check_qty(250_000)
    with pytest.raises(LotSizeError) as e:
        fx.check_qty(1500)
    assert "1500" in str(e.value) and "1000" in str(e.value) and "EUR/USD" in str(e.value)
    for bad, exc in ((0, ValueError), (-1000, ValueError), (MAX_QTY + 1000, ValueError), (1000.0, TypeError),
                     ("1000", TypeError), (True, TypeError)):
        with pytest.raises(exc):
            fx.check_qty(bad)


def test_notional_is_qty_price_multiplier(master):
    assert master.by_symbol("AAPL").notional(100, 23001) == Decimal("23001.00")
    assert master.by_symbol("ESZ6").notional(2, 24001) == Decimal("600025.00")
    assert master.by_symbol("AAPL 20261218 C200").notional(3, 3250) == Decimal("9750.00")
    assert master.by_symbol("EUR/USD").notional(1_000_000, 108001) == Decimal("1080010.00000")
    assert master.by_symbol("ESZ6").tick_value == Decimal("12.50")
    with pytest.raises(TypeError):
        master.by_symbol("AAPL").notional(1.5, 100)


# ------------------------------------------------------------------------------------------------
# Resolving FIX instrument fields
# ------------------------------------------------------------------------------------------------

def test_symbol_alone_resolves_the_plain_instrument(master):
    assert master.resolve("AAPL").key == "AAPL"
    assert master.resolve("AAPL", security_type="CS").key == "AAPL"
    assert master.resolve(" MSFT ", currency="usd").key == "MSFT"
    assert master.resolve("ESZ6").key == "ESZ6"
    assert master.resolve("ESZ6", "FUT", "202612").key == "ESZ6"
    assert master.resolve("ESZ6", "FUT", "20261218").key == "ESZ6"
    assert master.resolve("EUR/USD", "FOR").key == "EUR/USD"  # FIX 4.2 clients
    assert master.resolve("EUR/USD", "FXSPOT").key == "EUR/USD"
    assert master.resolve("BTC-USD", "CRYPTO").key == "BTC-USD"
    assert master.resolve("AAPL", "", "", "", "", "").key == "AAPL"  # empty fields count as absent


def test_option_shares_the_underlying_symbol(master):
    opt = master.resolve("AAPL", "OPT", "202612", "200", "1")
    assert opt.key == "AAPL 20261218 C200"
    assert master.resolve("AAPL", "OPT", "20261218", Decimal("200.00"), 1) is opt
    assert master.resolve("AAPL", maturity_month_year="202612", strike="200", put_or_call="1") is opt
    assert master.resolve("AAPL 20261218 C200") is opt  # the listing key typed as Symbol


@pytest.mark.parametrize("args,text", [
    (("AAPL", "OPT"), "needs MaturityMonthYear, StrikePrice, PutOrCall"),
    (("AAPL", "OPT", "202612", "200"), "needs PutOrCall"),
    (("AAPL", "OPT", "202612", "250", "1"), "no instrument matches"),
    (("AAPL", "OPT", "202612", "200", "0"), "no instrument matches"),
    (("AAPL", "OPT", "202701", "200", "1"), "no instrument matches"),
    (("AAPL", "OPT", "20261219", "200", "1"), "no instrument matches"),
    (("AAPL", "FUT"), "no instrument matches"),
    (("ESZ6", "FUT", "202603"), "no instrument matches"),
    (("AAPL", None, None, None, None, "EUR"), "no instrument matches"),
    (("XYZ",), "unknown instrument: Symbol=XYZ"),
    (("",), "Symbol \\(55\\) is missing"),
    ((None,), "Symbol \\(55\\) is missing"),
    (("AAPL", "OPT", "2026-12", "200", "1"), "MaturityMonthYear"),
    (("AAPL", "OPT", "202612", "two hundred", "1"), "StrikePrice"),
    (("AAPL", "OPT", "202612", 200.0, "1"), "StrikePrice"),
    (("AAPL", "OPT", "202612", "200", "C"), "PutOrCall"),
    (("AAPL", "OPT", "202612", "200", 2), "PutOrCall"),
    (("AAPL", 7), "SecurityType"),
])
def test_resolve_errors_say_what_did_not_match(master, args, text):
    with pytest.raises(UnknownInstrumentError, match=text):
        master.resolve(*args)


def test_resolve_ambiguous_without_a_plain_instrument():
    m = InstrumentMaster([
        Instrument("SPX", AssetClass.OPTION, Decimal("0.05"), 1, Decimal(100), "USD", maturity_month_year="202612",
                   strike=Decimal(5000), put_or_call=1, venues=("V",)),
        Instrument("SPX", AssetClass.OPTION, Decimal("0.05"), 1, Decimal(100), "USD", maturity_month_year="202612",
                   strike=Decimal(5000), put_or_call=0, venues=("V",)),
    ])
    with pytest.raises(UnknownInstrumentError, match="ambiguous"):
        m.resolve("SPX")
    assert m.resolve("SPX", "OPT", "202612", "5000", "0").key == "SPX 202612 P5000"


# ------------------------------------------------------------------------------------------------
# Instrument construction rules
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,exc,text", [
    (dict(symbol=""), ValueError, "symbol"),
    (dict(symbol=" X"), ValueError, "symbol"),
    (dict(asset_class="bond"), ValueError, "asset_class"),
    (dict(tick_size=Decimal(0)), ValueError, "tick_size"),
    (dict(tick_size=0.01), TypeError, "float"),
    (dict(lot_size=0), ValueError, "lot_size"),
    (dict(lot_size=1.0), TypeError, "lot_size"),
    (dict(multiplier=Decimal(-1)), ValueError, "multiplier"),
    (dict(currency="usd"), ValueError, "currency"),
    (dict(currency="US"), ValueError, "currency"),
    (dict(index=-1), ValueError, "index"),
    (dict(venues=()), ValueError, "at least one venue"),
    (dict(venues="V1"), ValueError, "venues"),
    (dict(venues=("V1", "V1")), ValueError, "twice"),
    (dict(default_venue="V9"), ValueError, "default_venue"),
    (dict(strike=Decimal(1)), ValueError, "only for futures and options"),
    (dict(maturity_month_year="202612"), ValueError, "only for futures and options"),
    (dict(reference_price="230.001"), ValueError, "tick size"),
    (dict(reference_price=230.0), TypeError, "float"),
    (dict(asset_class=AssetClass.FUTURE), ValueError, "maturity_month_year"),
    (dict(asset_class=AssetClass.FUTURE, maturity_month_year="202613"), ValueError, "YYYYMM"),
    (dict(asset_class=AssetClass.FUTURE, maturity_month_year="202612", expiry=dt.date(2027, 1, 5)),
     ValueError, "expiry"),
    (dict(asset_class=AssetClass.FUTURE, maturity_month_year="202612", strike=Decimal(5)),
     ValueError, "only for options"),
    (dict(asset_class=AssetClass.FUTURE, expiry="2026-12-18"), TypeError, "expiry"),
    (dict(asset_class=AssetClass.OPTION, maturity_month_year="202612", put_or_call=1), ValueError, "strike"),
    (dict(asset_class=AssetClass.OPTION, maturity_month_year="202612", strike=Decimal(0), put_or_call=1),
     ValueError, "strike"),
    (dict(asset_class=AssetClass.OPTION, maturity_month_year="202612", strike=Decimal(5), put_or_call=2),
     ValueError, "put_or_call"),
    (dict(asset_class=AssetClass.OPTION, maturity_month_year="202612", strike=Decimal(5), put_or_call=True),
     ValueError, "put_or_call"),
])
def test_instrument_validation(kw, exc, text):
    with pytest.raises(exc, match=text):
        equity(**kw)


def test_derived_fields():
    fut = equity(asset_class=AssetClass.FUTURE, expiry=dt.date(2026, 12, 18), multiplier=Decimal(50))
    assert fut.maturity_month_year == "202612" and fut.security_type == "FUT" and fut.key == "XYZ"
    opt = equity(asset_class="option", maturity_month_year="202703", strike="12.5", put_or_call=0)
    assert opt.key == "XYZ 202703 P12.5" and opt.underlying == "XYZ" and opt.strike == Decimal("12.5")
    assert equity(security_type="cs").security_type == "CS"
    assert equity(key="XYZ.N").key == "XYZ.N"
    assert equity(reference_price="10.00").reference_ticks == 1000
    assert dataclasses.replace(equity(reference_price="10.00"), index=3).reference_ticks == 1000


def test_master_assigns_indexes_and_refuses_duplicates():
    a, b = equity(symbol="A"), equity(symbol="B")
    m = InstrumentMaster([b, a])
    assert [(i.key, i.index) for i in m] == [("B", 0), ("A", 1)]
    assert m.by_index(1).key == "A" and "A" in m and m.by_symbol("C") is None and len(m) == 2
    assert m.by_symbol("A") in m
    with pytest.raises(ValueError, match="duplicate instrument key"):
        InstrumentMaster([a, a])
    with pytest.raises(ValueError, match="same FIX identity"):
        InstrumentMaster([a, equity(symbol="A", key="A2")])
    with pytest.raises(TypeError):
        InstrumentMaster([a, "B"])
    with pytest.raises(ValueError, match="no instrument with index 2"):
        m.by_index(2)
    with pytest.raises(TypeError):
        m.by_index("0")


def test_on_venue_and_venues():
    m = InstrumentMaster([equity(symbol="A", venues=("V1", "V2")), equity(symbol="B", venues=("V2",))])
    assert [i.key for i in m.on_venue("V2")] == ["A", "B"]
    assert [i.key for i in m.on_venue("V1")] == ["A"]
    assert m.venues() == ["V1", "V2"]


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------

def test_from_config_full_example():
    m = InstrumentMaster.from_config([
        cfg(),
        {"symbol": "CLF7", "asset_class": "future", "tick_size": "0.01", "multiplier": 1000,
         "maturity_month_year": 202701,
         "venues": ["V1", "V2"], "default_venue": "V2", "reference_price": "70.00", "currency": "usd"},
        {"symbol": "XYZ", "asset_class": "OPTION", "tick_size": "0.05", "multiplier": "100",
         "expiry": dt.date(2027, 1, 15),
         "strike": "50", "put_or_call": "P", "venues": ["V1"], "key": "XYZ P50 JAN27", "security_type": "OPT"},
    ])
    clf7 = m.by_symbol("CLF7")
    assert clf7.maturity_month_year == "202701" and clf7.default_venue == "V2" and clf7.currency == "USD"
    assert clf7.multiplier == Decimal(1000) and clf7.index == 1
    put = m.by_symbol("XYZ P50 JAN27")
    assert put.put_or_call == 0 and put.maturity_month_year == "202701" and put.expiry == dt.date(2027, 1, 15)


@pytest.mark.parametrize("entry,key,text", [
    (cfg(tick=1), "instruments[0].tick", "unknown key"),
    ({"asset_class": "equity", "tick_size": "0.01", "venues": ["V"]}, "instruments[0].symbol", "missing"),
    (cfg(venues=None) | {"venues": None}, "instruments[0].venues", "non-empty list"),
    ({k: v for k, v in cfg().items() if k != "venues"}, "instruments[0].venues", "missing"),
    (cfg(tick_size=0.01), "instruments[0].tick_size", "write decimals as strings"),
    (cfg(tick_size="0"), "instruments[0].tick_size", "> 0"),
    (cfg(tick_size="a"), "instruments[0].tick_size", "not a decimal"),
    (cfg(lot_size="100"), "instruments[0].lot_size", "integer"),
    (cfg(lot_size=0), "instruments[0].lot_size", "integer"),
    (cfg(multiplier=2.5), "instruments[0].multiplier", "strings"),
    (cfg(asset_class="bond"), "instruments[0].asset_class", "must be one of"),
    (cfg(symbol=""), "instruments[0].symbol", "non-empty string"),
    (cfg(currency="dollars"), "instruments[0].currency", "3-letter"),
    (cfg(venues="V1"), "instruments[0].venues", "list"),
    (cfg(venues=[]), "instruments[0].venues", "list"),
    (cfg(default_venue="V2"), "instruments[0].default_venue", "not one of"),
    (cfg(reference_price="1.001"), "instruments[0].reference_price", "tick size 0.01"),
    (cfg(reference_price=1.5), "instruments[0].reference_price", "strings"),
    (cfg(strike="5"), "instruments[0].strike", "only for futures"),
    (cfg(asset_class="future"), "instruments[0].maturity_month_year", "needs maturity_month_year"),
    (cfg(asset_class="future", maturity_month_year="2026-12"), "instruments[0].maturity_month_year", "YYYYMM"),
    (cfg(asset_class="future", expiry="18/12/2026"), "instruments[0].expiry", "YYYY-MM-DD"),
    (cfg(asset_class="future", expiry=dt.datetime(2026, 12, 18)), "instruments[0].expiry", "YYYY-MM-DD"),
    (cfg(asset_class="option", maturity_month_year="202612", put_or_call="call"),
     "instruments[0].strike", "needs a strike"),
    (cfg(asset_class="option", maturity_month_year="202612", strike="5", put_or_call="maybe"),
     "instruments[0].put_or_call", "call or put"),
    (cfg(asset_class="option", maturity_month_year="202612", strike="5"), "instruments[0].put_or_call", "0 \\(put\\)"),
    ("AAPL", "instruments[0]", "must be a table"),
])
def test_from_config_errors_name_the_key(entry, key, text):
    with pytest.raises(InstrumentConfigError, match=text) as e:
        InstrumentMaster.from_config([entry])
    assert e.value.key == key
    assert str(e.value).startswith(key + ":")


def test_from_config_whole_list_errors():
    with pytest.raises(InstrumentConfigError, match="instruments: lists no instrument"):
        InstrumentMaster.from_config([])
    with pytest.raises(InstrumentConfigError, match="must be a list"):
        InstrumentMaster.from_config({"symbol": "A"})
    with pytest.raises(InstrumentConfigError, match="instruments: duplicate instrument key 'XYZ'"):
        InstrumentMaster.from_config([cfg(), cfg()])
    with pytest.raises(InstrumentConfigError) as e:
        InstrumentMaster.from_config([cfg(), cfg(symbol="B", tick_size=1.0)])
    assert e.value.key == "instruments[1].tick_size"


# ------------------------------------------------------------------------------------------------
# FX
# ------------------------------------------------------------------------------------------------

def test_fx_direct_inverse_and_cross():
    fx = FxRates({"EURUSD": "1.08", "USD/JPY": "150", "GBP-USD": Decimal("1.25")})
    assert fx.convert("100", "EUR", "USD") == Decimal("108.00")
    assert fx.convert(Decimal("108"), "USD", "EUR") == Decimal(100)
    assert fx.convert(10, "usd", "USD") == Decimal(10)
    assert fx.rate("EUR", "JPY") == Decimal("162.00")
    assert fx.convert("1", "GBP", "JPY") == Decimal("187.50")
    assert fx.convert("1", "JPY", "USD") * 150 == Decimal(1)
    fx.set_rate("USD", "EUR", "0.9")  # replaces EURUSD
    assert fx.rate("USD", "EUR") == Decimal("0.9") and "EURUSD" not in fx.pairs()
    with pytest.raises(ValueError, match="no FX rate to convert EUR to CHF"):
        fx.convert(1, "EUR", "CHF")


@pytest.mark.parametrize("table,text", [
    ({"EURUS": "1.08"}, "fx_rates.EURUS: FX pair"),
    ({"EUREUR": "1"}, "fx_rates.EUREUR: .*same currency"),
    ({"EURUSD": 1.08}, "fx_rates.EURUSD: write the rate as a string"),
    ({"EURUSD": "0"}, "fx_rates.EURUSD: .*> 0"),
    ({"EURUSD": "x"}, "fx_rates.EURUSD: .*not a decimal"),
    ([("EURUSD", "1")], "fx_rates: must be a table"),
])
def test_fx_config_errors_name_the_key(table, text):
    with pytest.raises(ValueError, match=text):
        FxRates.from_config(table)


def test_fx_bad_inputs():
    fx = FxRates.from_config({"EURUSD": "1.08"})
    assert FxRates.from_config(None).pairs() == {}
    with pytest.raises(ValueError, match="currency"):
        fx.convert(1, "EURO", "USD")
    with pytest.raises(TypeError, match="float"):
        fx.convert(1.5, "EUR", "USD")
    with pytest.raises(ValueError):
        FxRates({"E": "1"})
