"""Key files, for homestub and wrap-and-run alike: opened once without
following a symlink and without blocking, then checked with fstat on that
descriptor. A FIFO, a symlink (even to a good key), a key owned by another
user, group-readable or shorter than 32 bytes: exit 78 at once, with the
reason, and the program never runs."""

import os
import re
import time

import pytest

from conftest import HOMESTUB, WRAP, describe, free_port, run_bounded, write_key


def fifo(d):
    p = d / "key"
    os.mkfifo(p, 0o600)
    return p


def symlink_to_good(d):
    good = write_key(d / "good-key")
    p = d / "key"
    os.symlink(good, p)
    return p


def other_owner(d):
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    p = write_key(d / "key")
    os.chown(p, 65534, 65534)
    return p


def mode_640(d):
    return write_key(d / "key", mode=0o640)


def short_31(d):
    p = d / "key"
    p.write_bytes(b"k" * 31)
    os.chmod(p, 0o600)
    return p


BAD_KEYS = [
    (fifo, r"not a regular file"),
    (symlink_to_good, r"symbolic link"),
    (other_owner, r"owned by uid 65534"),
    (mode_640, r"permissions 640"),
    (short_31, r"31 bytes"),
]
IDS = ["fifo", "symlink", "other-owner", "mode-640", "31-bytes"]


def homestub_argv(key):
    return [HOMESTUB, "--listen", f"127.0.0.1:{free_port()}", "--key-file", key]


def wrap_argv(key, marker):
    # The key is read before any connection: nothing listens on this port.
    return [WRAP, "--home", f"127.0.0.1:{free_port()}", "--key-file", key, "--", "/usr/bin/touch", marker]


@pytest.mark.parametrize("make_key,reason", BAD_KEYS, ids=IDS)
def test_homestub_refuses_bad_key_file_with_78_at_once(bins, scratch, make_key, reason):
    key = make_key(scratch)
    start = time.monotonic()
    r = run_bounded(homestub_argv(key), timeout=10)
    elapsed = time.monotonic() - start
    assert r.returncode == 78, describe(r)
    assert re.search(reason, r.stderr), describe(r)
    assert elapsed < 1.0, f"took {elapsed:.2f} s" + describe(r)


@pytest.mark.parametrize("make_key,reason", BAD_KEYS, ids=IDS)
def test_wrap_and_run_refuses_bad_key_file_with_78_at_once(bins, scratch, shm_marker, make_key, reason):
    key = make_key(scratch)
    start = time.monotonic()
    r = run_bounded(wrap_argv(key, shm_marker), timeout=10)
    elapsed = time.monotonic() - start
    assert r.returncode == 78, describe(r)
    assert re.search(reason, r.stderr), describe(r)
    assert elapsed < 1.0, f"took {elapsed:.2f} s" + describe(r)
    assert not shm_marker.exists(), "the program ran with an unusable key file"


def test_a_good_key_of_exactly_32_bytes_is_accepted_by_both(bins, scratch, shm_marker):
    key = scratch / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    os.chmod(key, 0o600)
    # wrap-and-run gets past the key to the connection: 69, unreachable.
    r = run_bounded(wrap_argv(key, shm_marker), timeout=30)
    assert r.returncode == 69, describe(r)
