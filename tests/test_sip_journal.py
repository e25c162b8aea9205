"""The SIP intake journal (bridge/sip/journal.py): written at receipt, forgotten once
handled, replayed after a crash."""

from __future__ import annotations

import os

from bridge.sip import journal as journal_module
from bridge.sip.journal import Journal


def test_a_handled_segment_is_deleted_once_closed(tmp_path):
    journal = Journal(tmp_path)
    keys = [journal.append("*trunk*", "127.0.0.1:5070", b"MESSAGE %d" % i) for i in range(3)]
    assert all(keys) and len(set(keys)) == 3
    for key in keys:
        journal.done(key)
    assert journal.left_over()  # still the open segment
    journal.close()
    assert journal.left_over() == []


def test_what_was_not_handled_is_replayed_after_a_crash(tmp_path):
    journal = Journal(tmp_path)
    first = journal.append("pbx", "127.0.0.1:5070", b"MESSAGE one \xff")
    journal.append("pbx", "127.0.0.1:5070", b"MESSAGE two")
    journal.done(first)
    # the process dies here: nothing closes the journal
    (segment,) = Journal(tmp_path).left_over()
    with segment.open("ab") as cut:
        cut.write(b'{"k": "half a line')  # the write the crash interrupted
    records = list(Journal.read(segment))
    assert [r.raw for r in records] == [b"MESSAGE one \xff", b"MESSAGE two"]
    assert records[0].key == first and records[0].account == "pbx"


def test_segments_roll_and_finished_ones_go(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "ROLL_RECORDS", 2)
    journal = Journal(tmp_path)
    keys = [journal.append("a", "s", b"m") for _ in range(5)]
    for key in keys[:4]:
        journal.done(key)
    assert len(journal.left_over()) == 1  # two full segments handled and deleted
    journal.done(keys[4])
    journal.close()
    assert journal.left_over() == []


def test_a_journal_that_cannot_be_written_says_so_and_goes_on(tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    os.chmod(directory, 0o500)
    journal = Journal(directory)
    try:
        if os.geteuid() == 0:  # root writes anywhere: make the directory a file instead
            os.chmod(directory, 0o700)
            directory.rmdir()
            directory.write_text("not a directory")
        assert journal.append("a", "s", b"m") is None
    finally:
        if directory.is_dir():
            os.chmod(directory, 0o700)
