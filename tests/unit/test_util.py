"""Cache-entry atomicity, locks and build-log error extraction."""

import os
import threading
import time

import pytest

from harness.kernel.build import compiler_errors
from harness.util import atomic_dir, file_lock, run
from harness.errors import CommandError, HarnessError, LockTimeout


def test_atomic_dir_publishes_only_on_success(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "metadata.json").write_text("{}")
            raise RuntimeError("interrupted build")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []  # no half-written temp dir left either
    with atomic_dir(final) as tmp:
        (tmp / "metadata.json").write_text("{}")
    assert (final / "metadata.json").exists()


def test_file_lock_serialises(tmp_path):
    lock = tmp_path / "k.lock"
    order = []

    def worker(name):
        with file_lock(lock):
            order.append(f"{name}-in")
            time.sleep(0.3)
            order.append(f"{name}-out")
    ts = [threading.Thread(target=worker, args=(n,)) for n in "ab"]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert order in (["a-in", "a-out", "b-in", "b-out"], ["b-in", "b-out", "a-in", "a-out"])


def test_file_lock_deadline(tmp_path):
    lock = tmp_path / "k.lock"
    with file_lock(lock):
        err = []
        t = threading.Thread(target=lambda: err.append(pytest.raises(LockTimeout, file_lock(lock, timeout=0.5).__enter__)))
        t.start()
        t.join()
    assert err
    e = err[0].value
    assert isinstance(e, HarnessError) and e.path == lock and e.pid == os.getpid()
    assert str(lock) in str(e) and f"held by PID {os.getpid()}" in str(e)


def test_file_lock_records_the_holder_and_says_it_waits(tmp_path):
    lock = tmp_path / "k.lock"
    said: list[str] = []
    entered = threading.Event()

    def waiter():
        with file_lock(lock, say=said.append, say_after=0.2):
            entered.set()

    with file_lock(lock):
        assert lock.read_text() == f"{os.getpid()}\n"
        t = threading.Thread(target=waiter)
        t.start()
        assert not entered.wait(0.8)  # still waiting; told once after 0.2 s, not every poll
    t.join(5)
    assert entered.is_set()
    assert said == [f"waiting for lock {lock} held by PID {os.getpid()}"]
    assert lock.read_text() == ""  # released: no stale PID left behind
    with file_lock(lock, say=said.append, say_after=0):  # free: acquired without a word
        pass
    assert len(said) == 1


def test_run_has_a_deadline_and_names_the_command():
    with pytest.raises(CommandError) as e:
        run(["sleep", "5"], timeout=0.5)
    assert "timed out" in str(e.value) and "sleep 5" in str(e.value)
    with pytest.raises(CommandError) as e:
        run(["false"])
    assert "exit 1" in str(e.value)


def test_compiler_errors_from_a_build_log():
    log = """  CC      fs/direct-io.o
/src/fs/direct-io.c: In function 'sb_init_dio_done_wq':
/src/fs/direct-io.c:566:9: error: expected ',' or ';' before 'if'
  566 |         if (!wq)
      |         ^~
make[3]: *** [/src/scripts/Makefile.build:250: fs/direct-io.o] Error 1
make[2]: *** [/src/scripts/Makefile.build:500: fs] Error 2
make: *** [Makefile:2012: .] Error 2
"""
    errs = compiler_errors(log)
    assert errs[0] == "/src/fs/direct-io.c:566:9: error: expected ',' or ';' before 'if'"
    assert any("if (!wq)" in e for e in errs)
    assert not any(e.startswith("make") for e in errs)
    assert compiler_errors("make: *** [Makefile:1: x] Error 2\n") == ["make: *** [Makefile:1: x] Error 2"]
