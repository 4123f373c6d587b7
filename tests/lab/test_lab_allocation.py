"""Lab index allocation with fcntl locks (pure, private lock directory)."""

import subprocess
import sys

import pytest
from virtsdk_lab import allocation
from virtsdk_lab.errors import LabError
from virtsdk_lab.naming import MAX_INDEX


def _never(_index):
    return False


def test_two_allocations_get_different_indexes(tmp_path):
    first = allocation.allocate(_never, lambda i: None, tmp_path)
    second = allocation.allocate(_never, lambda i: None, tmp_path)
    try:
        assert (first.index, second.index) == (1, 2)
    finally:
        first.release()
        second.release()
    again = allocation.allocate(_never, lambda i: None, tmp_path)
    assert again.index == 1
    again.release()


def test_lock_held_by_another_process_is_skipped(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         f"fd = os.open({str(tmp_path / '1.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert allocation.try_lock(1, tmp_path) is None
        lock = allocation.allocate(_never, lambda i: None, tmp_path)
        assert lock.index == 2
        lock.release()
    finally:
        holder.stdin.close()
        holder.wait()
    lock = allocation.try_lock(1, tmp_path)
    assert lock is not None
    lock.release()


def test_reserved_indexes_are_skipped_and_stale_ones_cleaned(tmp_path):
    cleaned = []
    lock = allocation.allocate(lambda i: i in (1, 2), cleaned.append, tmp_path)
    assert lock.index == 3
    assert cleaned == [3]
    lock.release()


def test_failing_stale_cleanup_releases_the_lock(tmp_path):
    def boom(index):
        raise LabError(f"cannot clean {index}")

    with pytest.raises(LabError, match="cannot clean 1"):
        allocation.allocate(_never, boom, tmp_path)
    lock = allocation.try_lock(1, tmp_path)
    assert lock is not None
    lock.release()


def test_no_free_index_is_a_clear_error(tmp_path):
    with pytest.raises(LabError, match=f"no free lab index in 1..{MAX_INDEX}"):
        allocation.allocate(lambda i: True, lambda i: None, tmp_path)
