"""[storage] keys of the journal: projection mode, projection interval and log segment size reach
the server's journal, and bad values are refused with the key named."""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from omskit import make_config  # noqa: E402
from crossbook.app.config import DEFAULT_CONFIG, ConfigError, merge, parse_config  # noqa: E402
from crossbook.app.server import Server  # noqa: E402


def storage(**keys):
    return parse_config(merge(tomllib.loads(DEFAULT_CONFIG), {"storage": keys}), "<test>").storage


def test_defaults_project_in_a_process_every_20_ms_with_64_mib_segments():
    s = storage()
    assert (s.projection, s.projection_interval_s, s.log_segment_bytes) == ("process", 0.02, 64 << 20)


def test_the_keys_reach_the_servers_journal(tmp_path):
    cfg = make_config(str(tmp_path))
    cfg = cfg.__class__(**{**cfg.__dict__, "storage": storage(dir=str(tmp_path), projection="thread",
                                                                   projection_interval_s=0.5,
                                                                   log_segment_bytes=1 << 20)})
    journal = Server(cfg).journal
    assert (journal.projection, journal.projection_interval_s, journal.rotate_bytes) == ("thread", 0.5, 1 << 20)


@pytest.mark.parametrize("keys, key, reason", [
    ({"projection": "fork"}, "storage.projection", "process or thread"),
    ({"projection": 1}, "storage.projection", "non-empty string"),
    ({"projection_interval_s": 0}, "storage.projection_interval_s", "number in 0.001..60"),
    ({"projection_interval_s": "fast"}, "storage.projection_interval_s", "number"),
    ({"log_segment_bytes": 100}, "storage.log_segment_bytes", "integer in 4096.."),
    ({"log_segment_bytes": 1.5}, "storage.log_segment_bytes", "integer"),
    ({"segment_size": 1}, "storage.segment_size", "unknown key"),
])
def test_bad_storage_values_name_the_key(keys, key, reason):
    with pytest.raises(ConfigError) as info:
        storage(**keys)
    assert info.value.key == key and reason in str(info.value)
