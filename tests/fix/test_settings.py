"""Config file loading: [default] inheritance, typed values, errors naming section and key."""
from __future__ import annotations

import dataclasses

import pytest

from crossbook.fix.settings import KEYS, SessionSettings, SettingsError, load_settings, parse_settings

GOOD = """
# acceptor for two counterparties
[default]
ConnectionType=acceptor
SenderCompID=ISLD
SocketAcceptPort=5001
ResetOnLogon=Y
MaxLatency=30

[session]
BeginString=FIX.4.4
TargetCompID=TW44
HeartBtInt=20

[session TW50]
BeginString=FIXT.1.1
TargetCompID=TW50
DefaultApplVerID=FIX.5.0SP2
CheckLatency=N
"""


def test_parse_good_file(tmp_path):
    path = tmp_path / "fix.cfg"
    path.write_text(GOOD)
    engine = load_settings(str(path))
    a, b = engine.sessions
    assert (a.begin_string, a.sender_comp_id, a.target_comp_id) == ("FIX.4.4", "ISLD", "TW44")
    assert a.reset_on_logon and a.heart_bt_int == 20 and a.max_latency == 30.0 and a.socket_accept_port == 5001
    assert b.is_fixt and b.default_appl_ver_id == "9" and b.check_latency is False
    assert engine.acceptors() == (a, b) and engine.initiators() == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.heart_bt_int = 5  # type: ignore[misc]


def test_every_key_maps_to_a_field():
    names = {f.name for f in dataclasses.fields(SessionSettings)}
    assert {attr for attr, _ in KEYS.values()} == names


@pytest.mark.parametrize("text, needle", [
    ("[session]\nBeginString=FIX.4.4\nSenderCompID=A\n", "missing required key TargetCompID"),
    ("[session]\nBeginString=FIX.9\nSenderCompID=A\nTargetCompID=B\n", "BeginString"),
    ("[session]\nBeginString=FIX.4.4\nSenderCompID=A\nTargetCompID=B\nHeartBtInt=abc\n", "HeartBtInt"),
    ("[session]\nBeginString=FIX.4.4\nSenderCompID=A\nTargetCompID=B\nResetOnLogon=maybe\n", "ResetOnLogon"),
    ("[session]\nBeginString=FIX.4.4\nSenderCompID=A\nTargetCompID=B\nBogus=1\n", "unknown key 'Bogus'"),
    ("[session]\nBeginString=FIXT.1.1\nSenderCompID=A\nTargetCompID=B\n", "DefaultApplVerID"),
    ("[session]\nBeginString=FIX.4.4\nSenderCompID=A\nTargetCompID=B\nMessageStore=file\n", "FileStorePath"),
    ("[session]\nBeginString=FIX.4.4\nSenderCompID=A\nTargetCompID=B\nConnectionType=initiator\n",
     "SocketConnectHost"),
    ("[session]\nBeginString=FIX.4.4\nSenderCompID=A\nTargetCompID=B\nUsername=u\n", "Password"),
    ("[session]\nBeginString=FIX.4.4\nSenderCompID=A\nTargetCompID=B\nSSLCertificateFile=/nonexistent.pem\n"
     "SSLCertificateKeyFile=/nonexistent.key\n", "SSLCertificateFile: file not found"),
    ("[sesion]\nBeginString=FIX.4.4\n", "unknown section"),
    ("BeginString=FIX.4.4\n", "outside a section"),
    ("[default]\nHeartBtInt=1\n", "no [session] section"),
    ("[session]\nBeginString=FIX.4.4\nBeginString=FIX.4.2\n", "set twice"),
    ("[session a]\nBeginString=FIX.4.4\nSenderCompID=A\nTargetCompID=B\n"
     "[session b]\nBeginString=FIX.4.4\nSenderCompID=A\nTargetCompID=B\n", "same session as [session a]"),
])
def test_errors_name_section_and_key(text, needle):
    with pytest.raises(SettingsError) as info:
        parse_settings(text, source="x.cfg")
    assert needle in str(info.value)
    assert "x.cfg" in str(info.value)


def test_missing_file_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(str(tmp_path / "nope.cfg"))


def test_direct_construction_is_validated():
    with pytest.raises(SettingsError, match="SenderCompID"):
        SessionSettings(begin_string="FIX.4.4", sender_comp_id="", target_comp_id="B")
    with pytest.raises(SettingsError, match="MaxLatency"):
        SessionSettings(begin_string="FIX.4.4", sender_comp_id="A", target_comp_id="B", max_latency=0)
