#!/usr/bin/env python3
"""Convert QuickFIX's spec XML files into the compact dictionaries under src/crossbook/fix/spec/.

Run by developers when the source data changes, never at build time:

    pip download --no-deps --no-binary :all: -d /tmp/qf quickfix==1.16.0
    python tools/gen_fix_dictionary.py /tmp/qf/quickfix-1.16.0.tar.gz

The argument is either the QuickFIX sdist (``quickfix-X.Y.Z.tar.gz``) or a directory holding
``FIX42.xml`` ... ``FIXT11.xml``. The output is one ``<NAME>.json.gz`` per spec plus
``LICENSE.quickfix`` (the QuickFIX Software License, which covers the data).

The expansion of components and groups mirrors QuickFIX's ``DataDictionary::readFromDocument``
(C++ 1.15/1.16) on purpose, quirks included, because the validation must give the same answers
as QuickFIX for the acceptance scripts:

* a message's ``fields`` are the fields and group-count tags reachable through components
  (group members are not message fields);
* a field is required only if it is required and every component on its path is required;
  inside a group, a member is required only if the group itself is required, and fields of
  components inside groups are never required (QuickFIX passes ``componentRequired=false``)...
* ...except that a required field of a required component nested in such a component is added
  to the *message's* required set (QuickFIX calls ``addRequiredField`` on the top dictionary);
* a group's delimiter is its first child: a field, the first field of a component, or a nested
  group's count tag.
* FIX 5.x application specs carry no header or trailer (QuickFIX ignores them too); the FIXT
  transport spec has them.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

SPEC_NAMES = ("FIX42", "FIX44", "FIX50", "FIX50SP1", "FIX50SP2", "FIXT11")
FORMAT_VERSION = 1
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "crossbook" / "fix" / "spec"


class _Node:
    """One QuickFIX DataDictionary level: a message, the header, the trailer, or a group."""

    def __init__(self) -> None:
        self.fields: list[int] = []  # in XML order, first occurrence kept
        self._seen: set[int] = set()
        self.required: set[int] = set()
        self.groups: dict[int, tuple[int, _Node]] = {}

    def add(self, tag: int) -> None:
        if tag not in self._seen:
            self._seen.add(tag)
            self.fields.append(tag)

    def to_json(self, table: _GroupTable) -> dict:
        out: dict = {"fields": self.fields, "required": sorted(self.required)}
        if self.groups:
            out["groups"] = {
                str(tag): table.intern({"delim": delim, **node.to_json(table)})
                for tag, (delim, node) in sorted(self.groups.items())
            }
        return out


class _GroupTable:
    """Identical group definitions (the same component used by many messages) are stored once.

    FIX 5.0 SP2 expands to ~3.5 MB of JSON without this; groups refer to each other and messages
    refer to groups by index into the file's ``groups`` list.
    """

    def __init__(self) -> None:
        self.entries: list[dict] = []
        self._index: dict[str, int] = {}

    def intern(self, group: dict) -> int:
        key = json.dumps(group, separators=(",", ":"), sort_keys=True)
        idx = self._index.get(key)
        if idx is None:
            idx = self._index[key] = len(self.entries)
            self.entries.append(group)
        return idx


def _children(root: ET.Element, name: str) -> list[ET.Element]:
    el = root.find(name)
    return [] if el is None else list(el)


def _required(el: ET.Element) -> bool:
    return el.get("required", "") in ("Y", "y")


class _SpecReader:
    def __init__(self, root: ET.Element, source: str) -> None:
        self.root = root
        self.source = source
        self.names: dict[str, int] = {}
        self.components = {c.get("name"): c for c in _children(root, "components")}
        self.table = _GroupTable()

    def lookup(self, name: str | None) -> int:
        if name is None or name not in self.names:
            raise ValueError(f"{self.source}: field {name!r} not defined in <fields>")
        return self.names[name]

    def component_fields(self, ref: ET.Element, dd: _Node, top: _Node, component_required: bool) -> int:
        name = ref.get("name")
        comp = self.components.get(name)
        if comp is None:
            raise ValueError(f"{self.source}: component {name!r} not found")
        first = 0
        for child in comp:
            if child.tag in ("field", "group"):
                tag = self.lookup(child.get("name"))
                if first == 0:
                    first = tag
                if _required(child) and component_required:
                    top.required.add(tag)  # QuickFIX quirk: always the top-level dictionary
                dd.add(tag)
            if child.tag == "component":
                self.component_fields(child, dd, top, _required(child))
            if child.tag == "group":
                self.group(child, dd, top, _required(child))
        return first

    def group(self, el: ET.Element, dd: _Node, top: _Node, group_required: bool) -> None:
        tag = self.lookup(el.get("name"))
        delim = 0
        field = 0
        gdd = _Node()
        for child in el:
            if child.tag == "field":
                field = self.lookup(child.get("name"))
                gdd.add(field)
                if _required(child) and group_required:
                    gdd.required.add(field)
            elif child.tag == "component":
                field = self.component_fields(child, gdd, top, False)
            elif child.tag == "group":
                field = self.lookup(child.get("name"))
                gdd.add(field)
                if _required(child) and group_required:
                    gdd.required.add(field)
                self.group(child, gdd, top, _required(child))
            if delim == 0:
                delim = field
        if delim:
            dd.groups[tag] = (delim, gdd)

    def non_body(self, section: ET.Element | None, what: str) -> dict:
        if section is None or len(section) == 0:
            raise ValueError(f"{self.source}: <{what}> section missing or empty")
        node = _Node()
        for child in section:
            if child.tag in ("field", "group"):
                tag = self.lookup(child.get("name"))
                node.add(tag)
                if _required(child):
                    node.required.add(tag)
            if child.tag == "group":
                self.group(child, node, node, _required(child))
        return node.to_json(self.table)

    def read(self) -> dict:
        root = self.root
        if root.tag != "fix":
            raise ValueError(f"{self.source}: root element is <{root.tag}>, expected <fix>")
        kind = root.get("type", "FIX")
        major, minor = root.get("major"), root.get("minor")
        servicepack = int(root.get("servicepack", "0") or 0)
        fields: dict[str, list] = {}
        for f in _children(root, "fields"):
            if f.tag != "field":
                continue
            tag = int(f.get("number"))
            name = f.get("name")
            if name in self.names:
                raise ValueError(f"{self.source}: field named {name} defined twice")
            self.names[name] = tag
            values = {v.get("enum"): v.get("description", "") for v in f if v.tag == "value"}
            fields[str(tag)] = [name, f.get("type"), values] if values else [name, f.get("type")]

        out: dict = {
            "format": FORMAT_VERSION,
            "begin_string": f"{kind}.{major}.{minor}",
            "servicepack": servicepack,
            "source": self.source,
            "fields": fields,
        }
        if kind == "FIXT" or (kind == "FIX" and major < "5"):
            out["header"] = self.non_body(root.find("header"), "header")
            out["trailer"] = self.non_body(root.find("trailer"), "trailer")

        messages: dict[str, dict] = {}
        for m in _children(root, "messages"):
            if m.tag != "message":
                continue
            msgtype = m.get("msgtype")
            top = _Node()
            for child in m:
                if child.tag in ("field", "group"):
                    tag = self.lookup(child.get("name"))
                    top.add(tag)
                    if _required(child):
                        top.required.add(tag)
                elif child.tag == "component":
                    self.component_fields(child, top, top, _required(child))
                if child.tag == "group":
                    self.group(child, top, top, _required(child))
            messages[msgtype] = {"name": m.get("name"), "category": m.get("msgcat", "app"), **top.to_json(self.table)}
        out["messages"] = messages
        out["groups"] = self.table.entries
        return out


def _load_sources(src: Path) -> tuple[dict[str, bytes], bytes | None, str]:
    """Return {spec name: XML bytes}, the LICENSE text, and a provenance label."""
    xmls: dict[str, bytes] = {}
    license_text = None
    if src.is_dir():
        for name in SPEC_NAMES:
            xmls[name] = (src / f"{name}.xml").read_bytes()
        for cand in (src / "LICENSE", src.parent / "LICENSE"):
            if cand.exists():
                license_text = cand.read_bytes()
                break
        return xmls, license_text, src.name
    with tarfile.open(src) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if len(parts) == 3 and parts[1] == "spec" and parts[2].endswith(".xml"):
                name = parts[2][:-4]
                if name in SPEC_NAMES:
                    xmls[name] = tar.extractfile(member).read()
            elif len(parts) == 2 and parts[1] == "LICENSE":
                license_text = tar.extractfile(member).read()
        label = src.name.removesuffix(".tar.gz")
    missing = [n for n in SPEC_NAMES if n not in xmls]
    if missing:
        raise ValueError(f"{src}: spec files missing: {', '.join(missing)}")
    return xmls, license_text, label


def generate(src: Path, out_dir: Path) -> list[Path]:
    xmls, license_text, label = _load_sources(src)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SPEC_NAMES:
        root = ET.parse(io.BytesIO(xmls[name])).getroot()
        data = _SpecReader(root, f"{label} spec/{name}.xml").read()
        raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        path = out_dir / f"{name}.json.gz"
        # mtime=0 and no file name keep the output byte-identical between runs
        with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
            gz.write(raw)
        written.append(path)
    if license_text is not None:
        lic = out_dir / "LICENSE.quickfix"
        lic.write_bytes(license_text)
        written.append(lic)
    else:
        print("warning: no LICENSE found in the source; LICENSE.quickfix not updated", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="quickfix sdist .tar.gz or a directory of FIX*.xml")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    for path in generate(args.source, args.out):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
