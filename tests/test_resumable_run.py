"""The run directory's record of which code wrote a run (loragen_core/resumable_run.py)."""

from __future__ import annotations

import json
import logging

import pytest

from loragen_core import resumable_run
from loragen_core.resumable_run import CODE_VERSIONS_FILE, code_fingerprint, code_versions, open_resumable_run

IDENTITY = {"mode": "test"}


def _append(log_path, *ids):
    with log_path.open("a") as log:
        for i in ids:
            log.write(json.dumps({"id": i}) + "\n")


@pytest.fixture
def other_code(monkeypatch):
    """Pretend the project's source changed after the call."""

    def change(fingerprint="0123456789abcdef"):
        monkeypatch.setattr(resumable_run, "code_fingerprint", lambda: fingerprint)

    return change


def test_a_run_resumed_under_the_same_code_keeps_one_version(tmp_path, caplog):
    log_path, done = open_resumable_run(tmp_path, IDENTITY, "log.jsonl", ValueError)
    _append(log_path, 1, 2)
    with caplog.at_level(logging.WARNING):
        _, done = open_resumable_run(tmp_path, IDENTITY, "log.jsonl", ValueError)
    assert len(done) == 2 and not caplog.records
    [version] = code_versions(tmp_path)
    assert version["code"] == code_fingerprint() and version["records_before"] == 0


def test_a_run_resumed_under_other_code_says_so_and_lists_both(tmp_path, caplog, other_code):
    log_path, _ = open_resumable_run(tmp_path, IDENTITY, "log.jsonl", ValueError)
    _append(log_path, 1, 2, 3)
    other_code()
    with caplog.at_level(logging.WARNING):
        open_resumable_run(tmp_path, IDENTITY, "log.jsonl", ValueError)
    assert "3 records were written by other code" in caplog.text and "0123456789abcdef" in caplog.text
    versions = code_versions(tmp_path)
    assert [(v["code"], v["records_before"]) for v in versions] == [(code_fingerprint(), 0), ("0123456789abcdef", 3)]


def test_a_run_from_before_versions_were_kept_is_flagged_on_resume(tmp_path, caplog):
    _append(tmp_path / "log.jsonl", 1)
    with caplog.at_level(logging.WARNING):
        open_resumable_run(tmp_path, IDENTITY, "log.jsonl", ValueError)
    assert "1 records were written by other code (not recorded)" in caplog.text


def test_a_damaged_versions_file_gets_a_clear_error(tmp_path):
    (tmp_path / CODE_VERSIONS_FILE).write_text('[{"code": ')
    with pytest.raises(ValueError, match="is damaged.*delete it"):
        open_resumable_run(tmp_path, IDENTITY, "log.jsonl", ValueError)


def test_the_fingerprint_follows_the_source(tmp_path, monkeypatch):
    package = tmp_path / "fingerprinted_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("X = 1\n")
    (package / "data.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(resumable_run, "SOURCE_PACKAGES", ("fingerprinted_pkg",))

    def fingerprint():
        code_fingerprint.cache_clear()
        return code_fingerprint()

    try:
        first = fingerprint()
        (package / "notes.txt").write_text("not source")
        assert fingerprint() == first
        (package / "data.json").write_text('{"tools": []}')
        second = fingerprint()
        assert second != first
        (package / "__init__.py").write_text("X = 2\n")
        assert fingerprint() not in (first, second)
    finally:
        code_fingerprint.cache_clear()
