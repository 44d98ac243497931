"""The exception hierarchy: one root, subclasses carrying what a user needs to act."""

from __future__ import annotations

import signal
from pathlib import Path


class HarnessError(Exception):
    """Root of every error kharness raises on purpose."""


class DefinitionError(HarnessError):
    """A YAML definition is invalid: names the file and the key."""

    def __init__(self, path: Path | str, key: str, message: str):
        self.path = Path(path)
        self.key = key
        self.message = message
        where = f"{self.path}: {key}" if key else str(self.path)
        super().__init__(f"{where}: {message}")


class CommandError(HarnessError):
    """An external command failed or timed out."""

    def __init__(self, argv: list[str], returncode: int | None, output: str = "",
                 log: Path | None = None, timeout: float | None = None):
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        self.log = log
        self.timeout = timeout
        if timeout is not None and returncode is None:
            head = f"command timed out after {timeout:.0f}s: {' '.join(argv)}"
        else:
            head = f"command failed (exit {returncode}): {' '.join(argv)}"
        tail = "\n".join(output.strip().splitlines()[-20:])
        msg = head + (f"\n{tail}" if tail else "") + (f"\n(log: {log})" if log else "")
        super().__init__(msg)


class SourceError(HarnessError):
    """A kernel source (git, tree, tarball) cannot be obtained or imported."""


class PatchError(HarnessError):
    """A patch of a series does not apply; names the patch, file and hunk."""

    def __init__(self, patch: Path | str, subject: str, failed: list[str], output: str):
        self.patch = Path(patch)
        self.subject = subject
        self.failed = failed
        self.output = output
        lines = [f"patch does not apply: {self.patch.name}: [PATCH] {subject}"]
        lines += [f"  {f}" for f in failed] or [f"  {output.strip().splitlines()[-1] if output.strip() else ''}"]
        super().__init__("\n".join(lines))


class ConfigError(HarnessError):
    """Kconfig options requested but not present in the final .config."""

    def __init__(self, missing: dict[str, tuple[str, str | None]], config: Path):
        self.missing = missing
        self.config = config
        rows = [f"  {k}: wanted {want!r}, got {got!r}" for k, (want, got) in sorted(missing.items())]
        super().__init__(f"{len(missing)} requested kconfig option(s) did not stick in {config}:\n"
                         + "\n".join(rows))


class BuildError(HarnessError):
    """A kernel build failed; carries the compiler's error lines and the log path."""

    def __init__(self, name: str, errors: list[str], log: Path):
        self.name = name
        self.errors = errors
        self.log = log
        body = "\n".join(f"  {e}" for e in errors[:30]) or "  (no error lines found; see the log)"
        super().__init__(f"kernel build of {name!r} failed:\n{body}\nfull log: {log}")


class VMError(HarnessError):
    """A VM failed to start, boot or answer."""

    def __init__(self, message: str, console_tail: str = "", console_log: Path | None = None):
        self.console_tail = console_tail
        self.console_log = console_log
        parts = [message]
        if console_tail:
            parts.append("last console lines:\n" + console_tail)
        if console_log:
            parts.append(f"console log: {console_log}")
        super().__init__("\n".join(parts))


class BootError(VMError):
    """The guest kernel did not boot (panic, no init, deadline)."""

    def __init__(self, message: str, panic_line: str | None = None, **kw):
        self.panic_line = panic_line
        if panic_line:
            message = f"{message}: {panic_line}"
        super().__init__(message, **kw)


class WorkloadError(HarnessError):
    """A workload (mkfs, mount, fio, xfstests) failed inside the guest."""

    def __init__(self, message: str, output: str = ""):
        self.output = output
        super().__init__(message + (f"\n{output.strip()}" if output.strip() else ""))


class HangError(WorkloadError):
    """A workload made no progress before its deadline; evidence was collected."""

    def __init__(self, message: str, evidence_dir: Path | None = None,
                 summary: list[str] | None = None, events: list | None = None):
        self.evidence_dir = evidence_dir
        self.summary = list(summary or [])
        self.events = list(events or [])
        super().__init__(message + (f"\n(evidence: {evidence_dir})" if evidence_dir else ""))


class ReproduceError(HarnessError):
    """A recorded run cannot be redone as recorded; names what changed since."""

    def __init__(self, run: str, changes: list[str], hint: str = ""):
        self.run = run
        self.changes = list(changes)
        body = "\n".join(f"  {c}" for c in changes)
        super().__init__(f"cannot reproduce {run} as recorded:\n{body}" + (f"\n{hint}" if hint else ""))


class LockTimeout(HarnessError):
    """A cache lock was not acquired in time; names the lock file and, if known, the holder's PID."""

    def __init__(self, path: Path | str, timeout: float, pid: int | None = None):
        self.path = Path(path)
        self.timeout = timeout
        self.pid = pid
        holder = f"held by PID {pid}" if pid is not None else "held by another process"
        super().__init__(f"could not lock {self.path} within {timeout:.0f}s: {holder} (a "
                         "kharness process using the same cache entry)")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived (see ``procs.install_signal_handlers``). A KeyboardInterrupt on
    purpose, and not a HarnessError: ``except Exception`` never swallows it, and every ``with``
    block, lock, child process group and temporary directory unwinds exactly as for Ctrl-C."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")
