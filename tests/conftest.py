"""Fixtures shared by several test modules (the hostile-input tests' hostile files)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture()
def hostile(tmp_path):
    """Hostile files: a FIFO, links to /dev/zero, a directory, deep JSON, huge integers, invalid UTF-8."""
    files = {}
    files["fifo"] = tmp_path / "pipe.toml"
    os.mkfifo(files["fifo"])
    files["fifo_json"] = tmp_path / "pipe.json"
    os.mkfifo(files["fifo_json"])
    files["zero"] = tmp_path / "z.toml"
    files["zero"].symlink_to("/dev/zero")
    files["zero_json"] = tmp_path / "z.json"
    files["zero_json"].symlink_to("/dev/zero")
    files["dir"] = tmp_path / "folder.toml"
    files["dir"].mkdir()
    files["deep"] = tmp_path / "deep.json"
    files["deep"].write_text("[" * 100_000 + "]" * 100_000)
    files["bigint"] = tmp_path / "bigint.json"
    files["bigint"].write_text('{"cumulative": true, "heads": [[' + "9" * 5000 + "]]}")
    files["utf8"] = tmp_path / "bad.toml"
    files["utf8"].write_bytes(b'hardware = "\xff\xfe"\n')
    files["utf8_json"] = tmp_path / "bad.json"
    files["utf8_json"].write_bytes(b'{"name": "\xff"}')
    files["nan_json"] = tmp_path / "nan.json"
    files["nan_json"].write_text('{"cumulative": true, "heads": [[NaN]]}')
    files["file"] = tmp_path / "notes.txt"
    files["file"].write_text("my notes\n")
    return files
