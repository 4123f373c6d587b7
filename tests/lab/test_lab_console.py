"""Parsing of the test guest's serial console protocol (pure)."""

import pytest
from virtsdk_lab.guest.console import ConsoleLog, Heartbeat, Marker, MemCheck

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4
LOG = (
    "[    0.000000] Linux version 6.1.0\r\n"
    "BOOT 00112233aabbccdd\r\n"
    "MARKER tok-1 new\r\n"
    "READY\r\n"
    "HEARTBEAT 00112233aabbccdd 1 2.26\r\n"
    f"MEMCHECK {SHA_A} 1\r\n"
    "HEARTBEAT 00112233aabbccdd 2 2.78\r\n"
    "[   3.1] random kernel line HEARTBEAT garbage\r\n"
    "BOOT ffeeddccbbaa9988\r\n"
    "MARKER tok-1 found\r\n"
    "DIRTY 4096 32\r\n"
    "DIRTYSTAT 20480 500\r\n"
    "HEARTBEAT ffeeddccbbaa9988 1 2.01\r\n"
    f"MEMCHECK {SHA_B} 1\r\n"
)


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "console.log"
    path.write_text(LOG)
    return ConsoleLog(path)


def test_events_are_parsed_in_order(log):
    assert log.boot_ids() == ["00112233aabbccdd", "ffeeddccbbaa9988"]
    assert log.heartbeats() == [
        Heartbeat("00112233aabbccdd", 1, 2.26),
        Heartbeat("00112233aabbccdd", 2, 2.78),
        Heartbeat("ffeeddccbbaa9988", 1, 2.01),
    ]
    assert log.markers() == [Marker("tok-1", "new"), Marker("tok-1", "found")]
    assert log.marker() == "tok-1"
    assert log.memchecks() == [MemCheck(SHA_A, 1), MemCheck(SHA_B, 1)]
    assert log.dirty_kbps() == 4096
    assert log.dirty_achieved_kbps() == 4096.0
    assert "\r" not in log.text()


def test_missing_file_reads_as_empty(tmp_path):
    log = ConsoleLog(tmp_path / "not-there.log")
    assert log.text() == ""
    assert log.heartbeats() == []
    assert log.marker() is None
    assert log.last_heartbeat() is None
    assert log.dirty_kbps() is None
    assert log.dirty_achieved_kbps() is None


def test_wait_for_returns_the_match_and_honours_start(log):
    assert log.wait_for(r"MARKER (\S+) found", timeout=0).group(1) == "tok-1"
    start = log.text().index("BOOT ffeeddccbbaa9988")
    assert log.wait_for(r"MARKER \S+ (\w+)", timeout=0, start=start).group(1) == "found"


def test_wait_for_times_out_with_the_log_tail(log):
    with pytest.raises(TimeoutError, match="SHUTDOWN.*\n(.|\n)*MEMCHECK"):
        log.wait_for("SHUTDOWN", timeout=0)


def test_wait_for_heartbeat_filters_by_boot_and_sequence(log):
    assert log.wait_for_heartbeat(0, boot_id="00112233aabbccdd").seq == 2
    assert log.wait_for_heartbeat(0, after_seq=1).seq == 2
    with pytest.raises(TimeoutError):
        log.wait_for_heartbeat(0, boot_id="ffeeddccbbaa9988", after_seq=1)


def test_a_line_still_being_written_is_not_read(tmp_path):
    path = tmp_path / "console.log"
    path.write_text("BOOT 00112233aabbccdd\nBOOT ffee")  # the guest is mid-line
    log = ConsoleLog(path)
    assert log.boot_ids() == ["00112233aabbccdd"]
    with pytest.raises(TimeoutError):
        log.wait_for(r"BOOT (ff[0-9a-f]+)", timeout=0)
    with path.open("a") as fh:
        fh.write("ddccbbaa9988\n")
    assert log.wait_for(r"BOOT (ff[0-9a-f]+)", timeout=0).group(1) == "ffeeddccbbaa9988"
