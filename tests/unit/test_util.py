"""Cache-entry atomicity, locks and build-log error extraction."""

import os
import shlex
import subprocess
import threading
import time

import pytest

from harness.errors import BuildError, CommandError, HarnessError, LockTimeout
from harness.kernel.build import _make_argv, _make_config, compiler_errors, reproducer
from harness.util import atomic_dir, file_lock, run


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
        t = threading.Thread(target=lambda: err.append(
            pytest.raises(LockTimeout, file_lock(lock, timeout=0.5).__enter__)))
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


def test_atomic_dir_sweeps_a_killed_writers_temp_siblings(tmp_path):
    final = tmp_path / "entry"
    stale = tmp_path / ".entry.tmp-deadbeef"
    (stale / "half").mkdir(parents=True)
    (stale / "half/build.log").write_text("killed here")
    other = tmp_path / ".other.tmp-deadbeef"
    other.mkdir()
    with atomic_dir(final) as tmp:
        assert not stale.exists()  # swept before the new writer starts
        (tmp / "metadata.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-deadbeef", "entry"]
    with atomic_dir(final) as tmp:  # replacing an entry leaves no aside copy behind
        (tmp / "metadata.json").write_text('{"v": 2}')
    assert (final / "metadata.json").read_text() == '{"v": 2}'
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-deadbeef", "entry"]


def test_a_failed_config_step_keeps_its_log(tmp_path, monkeypatch):
    """make defconfig fails: the error names a log that still exists after the temporary
    entry (where build.log is written) is gone."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("KHARNESS_CACHE", str(cache))
    repo, build_dir = tmp_path / "src", tmp_path / "build"
    repo.mkdir()
    build_dir.mkdir()
    (repo / "Makefile").write_text('%config:\n\t@echo "*** Can\'t find default configuration \\"$@\\"!"; exit 1\n')
    with pytest.raises(BuildError) as e:
        with atomic_dir(tmp_path / "entry") as out:
            _make_config("bogus_defconfig", build_dir, repo, {}, out / "build.log", "k", "0123abcd")
    assert not list(tmp_path.glob(".entry.tmp-*"))
    assert e.value.log == cache / "failed/k-0123abcd.log" and e.value.log.exists()
    assert "Can't find default configuration" in e.value.log.read_text()
    assert "make bogus_defconfig failed (exit 2)" in str(e.value) and str(e.value.log) in str(e.value)


def test_the_reproducer_is_quoted_and_names_the_final_entry(tmp_path):
    """Each reproducer line, pasted into a shell, does what the build did (real git and make)."""
    repo, build_dir, entry = tmp_path / "src dir", tmp_path / "build", tmp_path / "kernels/key"
    repo.mkdir()
    build_dir.mkdir()
    entry.mkdir(parents=True)
    (entry / ".config").write_text("CONFIG_FROM_ENTRY=y\n")
    (repo / "Makefile").write_text('bzImage:\n\t@echo "CC=[$(CC)] O=[$(O)] TS=[$$KBUILD_BUILD_TIMESTAMP]"\n')
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "Makefile"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = reproducer(repo, commit, entry, build_dir, _make_argv(build_dir, "bzImage", jobs=2))
    assert str(entry / ".config") in lines[1] and ".tmp-" not in " ".join(lines)
    outs = [subprocess.run(["sh", "-c", line], capture_output=True, text=True) for line in lines]
    assert [o.returncode for o in outs] == [0, 0, 0], [o.stderr for o in outs]
    assert (build_dir / ".config").read_text() == "CONFIG_FROM_ENTRY=y\n"
    assert outs[2].stdout.strip() == (f"CC=[ccache gcc] O=[{build_dir}] TS=[Thu Jan  1 00:00:00 UTC 2026]")
    assert shlex.split(lines[2])[-1] == "bzImage"
