"""scripts.serving.keyfile: the one reader of TorchServe's key_file.json."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from scripts.serving import keyfile

KEYS = {
    "management": {"key": "m-key", "expiration time": "2026-12-01T10:00:00.000Z"},
    "inference": {"key": "i-key", "expiration time": "2026-12-01T10:00:00.000Z"},
    "API": {"key": "a-key"},
}
BEFORE = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
AFTER = datetime(2026, 12, 1, 11, 0, tzinfo=timezone.utc)


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key_file.json"
    path.write_text(json.dumps(KEYS))
    return path


def test_read_keys_maps_each_api_to_its_key(key_file):
    assert keyfile.read_keys(key_file) == {"inference": "i-key", "management": "m-key", "API": "a-key"}


@pytest.mark.parametrize("api, header", [("inference", "Bearer i-key"), ("management", "Bearer m-key")])
def test_auth_header_carries_the_api_key(key_file, api, header):
    assert keyfile.auth_header(key_file, api) == {"Authorization": header}


def test_no_key_file_means_auth_off(tmp_path):
    assert keyfile.read_keys(tmp_path / "absent.json") == {}
    assert keyfile.auth_header(tmp_path / "absent.json", "inference") == {}


@pytest.mark.parametrize("api, now, want", [
    ("inference", BEFORE, False), ("inference", AFTER, True), ("API", AFTER, False),
])
def test_expired_compares_the_expiration_time(key_file, api, now, want):
    assert keyfile.expired(key_file, api, now) is want
