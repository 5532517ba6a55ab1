"""Server configuration: the embedded default, and bad configs failing with the key and the reason."""
from __future__ import annotations

from pathlib import Path

import pytest

from crossbook.app.config import ConfigError, load_config


def test_default_config_is_what_make_serve_runs():
    cfg = load_config()
    assert (cfg.fix.host, cfg.fix.port, cfg.fix.comp_id) == ("127.0.0.1", 9878, "CROSSBOOK")
    assert (cfg.http.host, cfg.http.port) == ("127.0.0.1", 8080)
    assert cfg.storage.dir == "./var"
    sessions = {s.comp_id: s.begin_string for s in cfg.directory.sessions.values()}
    assert sessions == {"FIRM1": "FIX.4.4", "FIRM2": "FIX.4.4", "FIRM42": "FIX.4.2"}
    assert [v.name for v in cfg.venues] == ["VENUE-A", "VENUE-B"]
    assert all(v.background is not None and v.background.enabled for v in cfg.venues)
    keys = {i.key for i in cfg.instruments}
    assert {"AAPL", "MSFT", "ESZ6", "EUR/USD", "BTC-USD"} <= keys and len(keys) == 6
    for firm in cfg.directory.firms.values():
        assert firm.default_account in firm.accounts


@pytest.mark.parametrize("toml,key,reason", [
    ("[fix]\nport = 'x'\n", "fix.port", "must be an integer"),
    ("[fix]\nport = 70000\n", "fix.port", "must be an integer in 0..65535"),
    ("[fix]\nbogus = 1\n", "fix.bogus", "unknown key"),
    ("[storage]\nsynchronous = 'sometimes'\n", "storage.synchronous", "normal or full"),
    ("[[firms]]\nname = 'F'\n", "firms[0].accounts", "at least one"),
    ("[[firms]]\nname = 'F'\n[[firms.accounts]]\nname = 'A'\nlimits = { max_order_qty = -1 }\n",
     "firms[0].accounts[0].limits.max_order_qty", ">= 0"),
    ("[[firms]]\nname = 'F'\n[[firms.accounts]]\nname = 'A'\nstp = 'maybe'\n", "firms[0].accounts[0].stp", "one of"),
    ("[[sessions]]\ncomp_id = 'X'\nfirm = 'NOPE'\n", "sessions[0].firm", "unknown firm"),
    ("[[sessions]]\ncomp_id = 'X'\nfirm = 'FIRM1'\nbegin_string = 'FIX.4.0'\n", "sessions[0].begin_string",
     "FIX.4.2 or FIX.4.4"),
    ("[[venues]]\nname = 'VENUE-A'\n", "instruments", "VENUE-B"),
    ("[[venues]]\nname = 'VENUE-A'\nbackground = { rate = -1 }\n[[venues]]\nname='VENUE-B'\n",
     "venues[0].background.rate", "> 0"),
    ("[[instruments]]\nsymbol = 'X'\nasset_class = 'equity'\ntick_size = 'abc'\nlot_size = 1\ncurrency = 'USD'\n"
     "venues = ['VENUE-A']\n", "instruments[0].tick_size", ""),
    ("[risk]\nrestricted = ['NOPE']\n", "risk.restricted", "unknown instrument"),
    ("fix = [", "(syntax)", ""),
])
def test_bad_config_names_key_and_reason(tmp_path, toml, key, reason):
    base = tmp_path / "c.toml"
    # Firms/sessions/venues from the default unless the snippet brings its own.
    from crossbook.app.config import DEFAULT_CONFIG
    text = toml
    for table in ("[[firms]]", "[[sessions]]", "[[venues]]"):
        if table not in toml:
            start = DEFAULT_CONFIG.index(table)
            blocks = []
            for chunk in DEFAULT_CONFIG[start:].split("\n\n"):
                if chunk.strip().startswith(table):
                    blocks.append(chunk)
            text += "\n" + "\n\n".join(blocks) + "\n"
    base.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(base))
    message = str(info.value)
    assert message.startswith(f"{base}: {key}"), message
    assert reason in message


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/crossbook.toml")


def test_the_complete_example_in_docs_config_md_loads(tmp_path):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    example = docs.split("## A complete example")[1].split("```toml")[1].split("```")[0]
    path = tmp_path / "example.toml"
    path.write_text(example.replace("/var/lib/crossbook", str(tmp_path / "var")))
    cfg = load_config(str(path))
    assert [i.key for i in cfg.instruments] == ["AAPL", "ESZ6", "BTC-USD"]
    assert cfg.restricted == ("BTC-USD",) and cfg.restricted_by_account["ACC1"] == ("ESZ6",)
    assert cfg.limits["ACC2"].collar_bps == 1000 and not cfg.limits["ACC2"].market_orders_allowed
