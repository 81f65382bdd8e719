"""The journal and the spool on disk: whole lines only, torn and damaged lines tolerated, the
delivery mark, and events that survive the process being killed at any moment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from flightdeck_sdk.journal import Journal, encode_line
from flightdeck_sdk.spool import Spool

from tests.interventions.services import free_port
from tests.sdk.conftest import journal


def event(n: int) -> dict:
    return {"workflow_id": "wf", "run_id": "r", "event_id": n, "type": "decision.made",
            "time": "2026-01-01T00:00:00Z", "attributes": {"n": n, "text": "é\n\u2028"}}


def test_it_reads_whole_lines_and_stops_at_a_torn_last_one(tmp_path):
    journal = Journal(tmp_path)
    journal.open_for_append()
    journal.append([event(1), event(2)])
    with open(journal.path, "ab") as handle:
        handle.write(encode_line(event(3))[:-7])  # a writer killed mid-line
    events, end = journal.read()
    assert [e["event_id"] for e in events] == [1, 2]
    assert events[0]["attributes"]["text"] == "é\n\u2028"
    assert end == len(encode_line(event(1))) + len(encode_line(event(2)))


def test_reopening_cuts_off_a_torn_line_so_the_next_event_stays_whole(tmp_path):
    first = Journal(tmp_path)
    first.open_for_append()
    first.append([event(1)])
    with open(first.path, "ab") as handle:
        handle.write(b"0badf00d {\"event_id\": 2, \"ty")
    first.close()
    second = Journal(tmp_path)
    second.open_for_append()
    second.append([event(2)])
    assert [e["event_id"] for e in second.read()[0]] == [1, 2]


def test_a_damaged_line_is_skipped_and_the_lines_after_it_are_read(tmp_path):
    journal = Journal(tmp_path)
    journal.open_for_append()
    journal.append([event(1), event(2), event(3)])
    data = bytearray(journal.path.read_bytes())
    data[data.index(b'"n":2') + 4] = ord("9")  # a flipped byte: the checksum no longer matches
    journal.path.write_bytes(bytes(data))
    events, end = journal.read()
    assert [e["event_id"] for e in events] == [1, 3]
    assert end == len(data)


def test_the_delivery_mark_is_the_largest_whole_offset_written(tmp_path):
    journal = Journal(tmp_path)
    assert journal.sent_offset() == 0
    journal.mark_sent(120)
    journal.mark_sent(480)
    with open(journal.sent_path, "ab") as handle:
        handle.write(b"99")  # torn: no newline yet, but still a number below the mark
    assert journal.sent_offset() == 480


def test_the_delivery_mark_file_is_compacted_as_it_grows(tmp_path):
    journal = Journal(tmp_path)
    for offset in range(0, 200_000, 10):
        journal.mark_sent(offset)
    assert journal.sent_path.stat().st_size < 70 * 1024
    assert journal.sent_offset() == 199_990


def test_every_run_has_its_own_folder_and_a_live_run_cannot_be_taken_twice(tmp_path):
    spool = Spool(tmp_path)
    first, lock = spool.claim("wf", "r1")
    second, other_lock = spool.claim("wf", "r2")
    assert first.directory != second.directory
    try:
        spool.claim("wf", "r1", timeout=0.2)
    except Exception as exc:
        assert "held by another live process" in str(exc)
    else:
        raise AssertionError("a held run was claimed twice")
    lock.release()
    other_lock.release()
    assert {(f.workflow_id, f.run_id) for f in spool.folders()} == {("wf", "r1"), ("wf", "r2")}


KILLED_AGENT = """
import sys
from flightdeck_sdk import Client
client = Client(url=sys.argv[1], token="fda_testtest_secret", spool_dir=sys.argv[2],
                poll_commands=False)
with client.run("spool", "killed", "r1", new=sys.argv[3] == "new") as run:
    while True:
        run.decide("step", blob="x" * 3000)
        print(run._next_event_id - 1, flush=True)  # the call returned: this id is promised
"""


def test_events_whose_call_returned_survive_a_sigkill_at_any_moment(offline_client, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nobody there: everything stays in the spool
    spool = tmp_path / "spool"
    promised: list[int] = []
    for round_number in range(4):
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", KILLED_AGENT, url, str(spool),
             "new" if round_number == 0 else "resume"],
            stdout=subprocess.PIPE, text=True,
        )
        for count, line in enumerate(process.stdout, 1):
            promised.append(int(line))
            if count >= 30 + 17 * round_number:  # a different moment in each round
                break
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        process.stdout.close()
    client = offline_client(spool_dir=spool)
    events = journal(client, "killed", "r1")
    ids = [e["event_id"] for e in events]
    assert ids == list(range(1, len(ids) + 1))  # dense: each process continued the last
    assert set(promised) <= set(ids)
    assert sum(1 for e in events if e["type"] == "marker.recorded") == 3


def test_the_spool_and_its_dead_letter_file_are_the_owners_only(tmp_path):
    """Refused events are kept whole, payloads and secrets included: other users of the
    machine must not read them."""
    spool = Spool(tmp_path / "home" / "spool")
    spool.dead_letter({"workflow_id": "w", "run_id": "r", "event_id": 1,
                       "attributes": {"api_key": "secret"}}, "conflict", "differs")
    assert (tmp_path / "home" / "spool").stat().st_mode & 0o077 == 0
    assert spool.dead_letter_path.stat().st_mode & 0o077 == 0
    assert spool.dead_letters()[0]["event"]["attributes"]["api_key"] == "secret"
