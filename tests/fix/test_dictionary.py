"""The data dictionaries: loading, lookups, QuickFIX's expansion of components and groups."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from importlib import resources
from pathlib import Path

import pytest

from crossbook.fix.dictionary import DataDictionary, load_dictionary, load_spec

REPO = Path(__file__).resolve().parents[2]
SPEC_NAMES = ["FIX42", "FIX44", "FIX50", "FIX50SP1", "FIX50SP2", "FIXT11"]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_fix_dictionary", REPO / "tools" / "gen_fix_dictionary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- loading --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,app_name",
    [
        (("FIX.4.2",), "FIX42"),
        (("FIX.4.4",), "FIX44"),
        (("FIXT.1.1", "7"), "FIX50"),
        (("FIXT.1.1", "8"), "FIX50SP1"),
        (("FIXT.1.1", "9"), "FIX50SP2"),
        (("FIXT.1.1", 9), "FIX50SP2"),
        (("FIXT.1.1", "FIX.5.0SP2"), "FIX50SP2"),
        (("FIXT.1.1", "6"), "FIX44"),
    ],
)
def test_load_dictionary_versions(args, app_name):
    dd = load_dictionary(*args)
    assert isinstance(dd, DataDictionary)
    assert dd.begin_string == args[0]
    assert dd.app.name == app_name
    assert dd.transport.name == ("FIXT11" if args[0] == "FIXT.1.1" else app_name)
    assert load_dictionary(*args) is dd or args[1:] in ((9,), ("FIX.5.0SP2",))
    assert load_dictionary(*args) is load_dictionary(*args)


def test_dictionaries_are_cached_by_normalised_appl_ver_id():
    assert load_dictionary("FIXT.1.1", "9") is load_dictionary("FIXT.1.1", "FIX.5.0SP2")
    assert load_dictionary("FIX.4.4", "9") is load_dictionary("FIX.4.4")  # ignored for FIX.4.x


@pytest.mark.parametrize(
    "args,exc,match",
    [
        (("FIX.4.3",), ValueError, "BeginString"),
        (("FIXT.1.1",), ValueError, "appl_ver_id"),
        (("FIXT.1.1", "10"), ValueError, "ApplVerID"),
        (("FIXT.1.1", "FIX.4.3"), ValueError, "ApplVerID"),
        ((b"FIX.4.4",), TypeError, "begin_string"),
    ],
)
def test_load_dictionary_errors(args, exc, match):
    with pytest.raises(exc, match=match):
        load_dictionary(*args)


def test_load_spec_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown FIX spec"):
        load_spec("../../etc/passwd")


def test_spec_files_and_licence_ship_in_the_package():
    spec_dir = resources.files("crossbook.fix").joinpath("spec")
    for name in SPEC_NAMES:
        data = json.loads(gzip.decompress(spec_dir.joinpath(f"{name}.json.gz").read_bytes()))
        assert data["format"] == 1 and "quickfix" in data["source"]
    licence = spec_dir.joinpath("LICENSE.quickfix").read_text()
    assert "QuickFIX Software License" in licence and "quickfixengine.org" in licence
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"*.json.gz"' in pyproject and '"LICENSE.*"' in pyproject


def test_spec_versions():
    assert [load_spec(n).begin_string for n in SPEC_NAMES] == [
        "FIX.4.2", "FIX.4.4", "FIX.5.0", "FIX.5.0", "FIX.5.0", "FIXT.1.1"
    ]
    assert [load_spec(n).servicepack for n in ("FIX50", "FIX50SP1", "FIX50SP2")] == [0, 1, 2]
    assert load_spec("FIX50SP2").header is None  # 5.x application specs have no header (QuickFIX too)


# -- lookups --------------------------------------------------------------------------------------


@pytest.fixture(params=[("FIX.4.2",), ("FIX.4.4",), ("FIXT.1.1", "9")], ids=["FIX42", "FIX44", "FIX50SP2"])
def dd(request):
    return load_dictionary(*request.param)


def test_field_lookups(dd):
    assert dd.field_name(44) == "Price" and dd.field_type(44) == "PRICE"
    assert dd.field_tag("ClOrdID") == 11 and dd.field_tag("NoSuchField") is None
    assert dd.field_type(52) == "UTCTIMESTAMP" and dd.field_type(38) == "QTY"
    assert dd.field_type(386) in ("NUMINGROUP", "INT")
    assert dd.has_field(11) and not dd.has_field(99999) and not dd.has_field(-1)
    assert dd.field_name(99999) is None and dd.field_type(99999) is None
    assert dd.field_values(54) >= {b"1", b"2"} and dd.field_values(11) is None
    assert dd.value_name(54, "1") == "BUY" and dd.value_name(54, b"2") == "SELL"
    assert dd.value_name(54, "Z") is None and dd.value_name(99999, "1") is None
    assert dd.is_data_field(96) and not dd.is_data_field(95)


def test_fixt_fields_come_from_both_specs():
    dd = load_dictionary("FIXT.1.1", "9")
    assert dd.field_name(1137) == "DefaultApplVerID"  # transport
    assert dd.field_name(1300) == "MarketSegmentID"  # application only
    assert dd.transport.fields.get(1300) is None


def test_header_and_trailer_fields(dd):
    for tag in (8, 9, 35, 34, 49, 52, 56, 43, 97, 122, 115, 128, 627):
        assert dd.is_header_field(tag), tag
    for tag in (10, 89, 93):
        assert dd.is_trailer_field(tag) and not dd.is_header_field(tag)
    for tag in (11, 55, 58, 112):
        assert not dd.is_header_field(tag) and not dd.is_trailer_field(tag)
    assert dd.is_header_field(1128)  # QuickFIX's fixed list, even for FIX.4.x


def test_messages(dd):
    assert dd.is_admin("A") and dd.is_admin("0") and dd.is_admin("5")
    assert not dd.is_admin("D") and not dd.is_admin("AA") and not dd.is_admin("*")
    assert dd.has_message("D") and dd.has_message("8") and dd.has_message("A") and dd.has_message("j")
    assert not dd.has_message("*") and not dd.has_message("")
    assert dd.message_name("D") == "NewOrderSingle" and dd.message_name("ZZ") is None
    assert dd.message("A").is_admin and not dd.message("D").is_admin
    assert dd.message("A").category == "admin" and dd.message("8").category == "app"
    assert 98 in dd.required_fields("A") and 108 in dd.required_fields("A")
    assert dd.required_fields("ZZ") == ()
    assert list(dd.required_fields("D")) == sorted(dd.required_fields("D"))


def test_fixt_admin_messages_come_from_transport():
    dd = load_dictionary("FIXT.1.1", "9")
    assert dd.message("A") is dd.transport.messages["A"]
    assert 1137 in dd.required_fields("A")
    assert "A" not in dd.app.messages and "D" not in dd.transport.messages


def test_required_fields_follow_quickfix():
    # NewOrderSingle: components are expanded; a component's field is required only when the
    # component is required too (FIX.4.4's Instrument makes Symbol optional)
    assert load_dictionary("FIX.4.2").required_fields("D") == (11, 21, 40, 54, 55, 60)
    assert load_dictionary("FIX.4.4").required_fields("D") == (11, 40, 54, 60)
    assert load_dictionary("FIXT.1.1", "9").required_fields("D") == (11, 40, 54, 60)
    assert load_dictionary("FIX.4.4").required_fields("0") == ()


def test_groups(dd):
    g = dd.group("D", 386)
    assert g.tag == 386 and g.delim == 336 and g.fields[0] == 336 and 336 in g.field_set
    assert 336 not in dd.message("D").field_set and 386 in dd.message("D").field_set
    assert dd.group("D", 55) is None and dd.group("ZZ", 386) is None
    if dd.begin_string == "FIX.4.2":
        assert dd.header_group(627) is None  # FIX.4.2 has no NoHops
    else:
        assert dd.header_group(627).delim == 628


def test_nested_groups():
    dd = load_dictionary("FIX.4.4")
    parties = dd.group("D", 453)
    assert parties.delim == 448 and parties.fields == (448, 447, 452, 802)
    sub = parties.groups[802]
    assert sub.delim == 523 and sub.fields == (523, 803) and parties.order[802] == 3


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_spec_consistency(name):
    spec = load_spec(name)
    known = set(spec.fields)

    def check_group(g, where):
        assert g.delim == g.fields[0], where
        assert set(g.fields) <= known and set(g.required) <= g.field_set, where
        for tag, nested in g.groups.items():
            assert tag in g.field_set, where
            check_group(nested, f"{where}/{tag}")

    for msg_type, m in spec.messages.items():
        assert m.field_set <= known, msg_type
        assert set(m.required) <= m.field_set, msg_type
        for tag, g in m.groups.items():
            assert tag in m.field_set, (msg_type, tag)
            check_group(g, f"{msg_type}/{tag}")
    for section in (spec.header, spec.trailer):
        if section is not None:
            assert section.field_set <= known


# -- the generator --------------------------------------------------------------------------------

QUIRKS_XML = b"""<fix type='FIX' major='4' minor='4' servicepack='0'>
 <header>
  <field name='BeginString' required='Y' />
  <field name='MsgType' required='Y' />
  <group name='NoHops' required='N'><field name='HopCompID' required='Y' /></group>
 </header>
 <trailer><field name='CheckSum' required='Y' /></trailer>
 <messages>
  <message name='Order' msgtype='D' msgcat='app'>
   <field name='ClOrdID' required='Y' />
   <component name='Instrument' required='N' />
   <component name='Qty' required='Y' />
   <group name='NoLegs' required='Y'>
    <component name='Leg' required='Y' />
    <field name='LegQty' required='Y' />
   </group>
   <group name='NoAllocs' required='N'>
    <field name='AllocAccount' required='Y' />
    <field name='AllocQty' required='Y' />
    <group name='NoNested' required='Y'><field name='NestedID' required='Y' /></group>
   </group>
  </message>
  <message name='Heartbeat' msgtype='0' msgcat='admin'><field name='TestReqID' required='N' /></message>
 </messages>
 <components>
  <component name='Instrument'><field name='Symbol' required='Y' /></component>
  <component name='Qty'><field name='OrderQty' required='Y' /><field name='CashQty' required='N' /></component>
  <component name='Leg'>
   <field name='LegSymbol' required='Y' />
   <component name='LegInner' required='Y' />
  </component>
  <component name='LegInner'><field name='LegSide' required='Y' /></component>
 </components>
 <fields>
  <field number='8' name='BeginString' type='STRING' />
  <field number='35' name='MsgType' type='STRING'><value enum='D' description='ORDER' /></field>
  <field number='10' name='CheckSum' type='STRING' />
  <field number='11' name='ClOrdID' type='STRING' />
  <field number='55' name='Symbol' type='STRING' />
  <field number='38' name='OrderQty' type='QTY' />
  <field number='152' name='CashQty' type='QTY' />
  <field number='555' name='NoLegs' type='NUMINGROUP' />
  <field number='600' name='LegSymbol' type='STRING' />
  <field number='624' name='LegSide' type='CHAR' />
  <field number='687' name='LegQty' type='QTY' />
  <field number='78' name='NoAllocs' type='NUMINGROUP' />
  <field number='79' name='AllocAccount' type='STRING' />
  <field number='80' name='AllocQty' type='QTY' />
  <field number='9000' name='NoNested' type='NUMINGROUP' />
  <field number='9001' name='NestedID' type='STRING' />
  <field number='627' name='NoHops' type='NUMINGROUP' />
  <field number='628' name='HopCompID' type='STRING' />
  <field number='112' name='TestReqID' type='STRING' />
 </fields>
</fix>
"""


def test_generator_expands_like_quickfix():
    import xml.etree.ElementTree as ET

    gen = _generator()
    data = gen._SpecReader(ET.fromstring(QUIRKS_XML), "test").read()
    groups = data["groups"]
    order = data["messages"]["D"]
    assert data["begin_string"] == "FIX.4.4"
    assert order["category"] == "app" and data["messages"]["0"]["category"] == "admin"
    # component fields become message fields; group members do not
    assert order["fields"] == [11, 55, 38, 152, 555, 78]
    # Symbol: optional component -> not required; OrderQty: required component -> required;
    # LegSide: required component nested in a component inside a group -> QuickFIX puts it in
    # the message's required set (addRequiredField on the top dictionary)
    assert order["required"] == [11, 38, 555, 624]
    legs = groups[order["groups"]["555"]]
    # delimiter = first field of the leading component; component fields in a group are never
    # required in the group, plain fields are when the group is required
    assert legs["delim"] == 600 and legs["fields"] == [600, 624, 687] and legs["required"] == [687]
    allocs = groups[order["groups"]["78"]]
    # optional group: its required members are not required
    assert allocs["delim"] == 79 and allocs["required"] == []
    nested = groups[allocs["groups"]["9000"]]
    # a required group nested in an optional one keeps its own required members
    assert nested["delim"] == 9001 and nested["required"] == [9001]
    assert data["header"]["required"] == [8, 35] and data["trailer"]["required"] == [10]
    assert groups[data["header"]["groups"]["627"]]["fields"] == [628]
    assert data["fields"]["35"] == ["MsgType", "STRING", {"D": "ORDER"}]
    assert data["fields"]["11"] == ["ClOrdID", "STRING"]


def test_generator_rejects_broken_specs():
    import xml.etree.ElementTree as ET

    gen = _generator()
    broken = QUIRKS_XML.replace(b"<field name='ClOrdID' required='Y' />", b"<field name='Nope' required='Y' />")
    with pytest.raises(ValueError, match="Nope"):
        gen._SpecReader(ET.fromstring(broken), "test").read()
    broken = QUIRKS_XML.replace(b"<component name='Qty' required='Y' />", b"<component name='Gone' />")
    with pytest.raises(ValueError, match="Gone"):
        gen._SpecReader(ET.fromstring(broken), "test").read()


def test_generator_writes_loadable_files(tmp_path):
    gen = _generator()
    src = tmp_path / "xml"
    src.mkdir()
    for name in gen.SPEC_NAMES:
        (src / f"{name}.xml").write_bytes(QUIRKS_XML)
    (src / "LICENSE").write_text("The QuickFIX Software License, Version 1.0\n")
    out = tmp_path / "out"
    written = gen.generate(src, out)
    assert sorted(p.name for p in written) == sorted([f"{n}.json.gz" for n in gen.SPEC_NAMES] + ["LICENSE.quickfix"])
    first = (out / "FIX44.json.gz").read_bytes()
    gen.generate(src, out)
    assert (out / "FIX44.json.gz").read_bytes() == first  # reproducible output


@pytest.mark.skipif(
    not os.environ.get("CROSSBOOK_QUICKFIX_SDIST"),
    reason="set CROSSBOOK_QUICKFIX_SDIST=/path/quickfix-1.16.0.tar.gz to check the committed specs",
)
def test_committed_specs_match_the_generator(tmp_path):
    gen = _generator()
    gen.generate(Path(os.environ["CROSSBOOK_QUICKFIX_SDIST"]), tmp_path)
    committed = REPO / "src" / "crossbook" / "fix" / "spec"
    for name in [f"{n}.json.gz" for n in SPEC_NAMES] + ["LICENSE.quickfix"]:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
