"""SSH to the guest with fabric (paramiko underneath): commands and file copies with deadlines, and
the guest's host key pinned to the one the image build recorded."""

from __future__ import annotations

import base64
import io
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

import paramiko
from fabric import Config, Connection
from fabric.runners import Remote
from invoke.exceptions import CommandTimedOut, ThreadException

from ..errors import HarnessError

logging.getLogger("paramiko").setLevel(logging.CRITICAL)

CHANNEL_OPEN_SECONDS = 30.0   # opening a session or SFTP channel on a live connection
TRANSFER_SECONDS = 600.0      # a whole put/get
STALL_SECONDS = 60.0          # one SFTP request without an answer


@dataclass(frozen=True)
class Result:
    """What a guest command did."""

    argv: str
    status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0


class GuestCommandError(HarnessError):
    """A guest command failed (non-zero exit) or ran past its deadline."""

    def __init__(self, result: Result | None, command: str, timeout: float | None = None,
                 partial: str = ""):
        self.result = result
        self.command = command
        self.timeout = timeout
        if result is None:
            msg = f"guest command timed out after {timeout:.0f}s: {command}"
            if partial.strip():
                msg += "\n" + "\n".join(partial.strip().splitlines()[-15:])
        else:
            out = (result.stderr.strip() or result.stdout.strip())
            msg = f"guest command failed (exit {result.status}): {command}" + (
                "\n" + "\n".join(out.splitlines()[-20:]) if out else "")
        super().__init__(msg)


class HostKeyMismatch(HarnessError):
    """The SSH server's host key is not the one recorded for the image."""

    def __init__(self, where: str, expected: paramiko.PKey, got: paramiko.PKey):
        self.where, self.expected, self.got = where, expected, got
        super().__init__(
            f"SSH host key did not match for {where}: the server offered {got.get_name()} "
            f"{got.fingerprint}, the image recorded {expected.get_name()} {expected.fingerprint}. "
            "Something other than this VM's guest answers on the port, or the image's cache "
            "entry is not the image that booted; refusing to log in.")


class TransferError(HarnessError):
    """A file copy to or from the guest failed, stalled or ran past its deadline."""


def _command(cmd: str | Sequence[str]) -> str:
    return cmd if isinstance(cmd, str) else shlex.join(list(cmd))


def parse_public_key(line: str) -> paramiko.PKey:
    """An OpenSSH public key line (``ssh-ed25519 AAAA... comment``) as a paramiko key."""
    try:
        kind, data = line.split()[:2]
        return paramiko.PKey.from_type_string(kind, base64.b64decode(data))
    except (ValueError, TypeError, paramiko.SSHException) as e:
        raise HarnessError(f"not an OpenSSH public key line: {line.strip()[:80]!r} ({e})") from None


class _RejectOthers(paramiko.RejectPolicy):
    """paramiko's RejectPolicy, raising HostKeyMismatch (the server offered another key type)."""

    def __init__(self, expected: paramiko.PKey):
        self.expected = expected

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> NoReturn:
        raise HostKeyMismatch(hostname, self.expected, key)


class _Remote(Remote):
    """fabric's Remote runner with the deadline running from before the exec request, so a guest
    that never answers it times out too (invoke starts the timer only after ``start``)."""

    def start(self, command: str, shell: str, env: dict, timeout: float | None = None) -> None:
        super().start_timer(self.opts["timeout"])
        super().start(command, shell, env, timeout)

    def start_timer(self, timeout: float) -> None:  # already running since start()
        if self._timer is None:
            super().start_timer(timeout)

    def read_our_stdin(self, input_: IO[str]) -> str | None:
        """The whole of an in-memory stdin (``SSH.run(stdin=...)``) at once: invoke reads a
        stream it cannot query one byte per loop with ``input_sleep`` (10 ms) between loops, so a
        fio job file took seconds to arrive (see docs/benchmarks.md, the SSH stdin row)."""
        if isinstance(input_, io.StringIO):
            return input_.read()
        return super().read_our_stdin(input_)

    def kill(self) -> None:
        channel = getattr(self, "channel", None)
        if channel is not None:
            channel.close()

    def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
        """Ctrl-C or SIGTERM (``Terminated``) while a command runs: without a pty fabric re-raises
        it, then invoke joins its reader threads, which wait for the channel's EOF, i.e. for the
        guest command to end. Close the channel first so the interrupt unwinds at once."""
        if not self.using_pty:
            self.kill()
        super().send_interrupt(interrupt)


class _Connection(Connection):
    """A fabric Connection whose memoized SFTP client can be dropped after a failed transfer."""

    def drop_sftp(self) -> None:
        sftp = getattr(self, "_sftp", None)   # fabric's memo (Connection.sftp)
        if sftp is not None:
            try:
                sftp.close()
            except Exception:
                pass
            self._sftp = None


def ssh_argv(port: int, key: Path, *, known_hosts: Path | None = None, host: str = "127.0.0.1") -> list[str]:
    """An OpenSSH ``ssh`` argv logging into the guest as root, for an interactive terminal.

    It reads no ssh_config (``-F /dev/null``: the user's ``~/.ssh/config`` could forward the
    agent, X11 or ports into the guest, or add identities), offers only ``key`` (IdentitiesOnly,
    no agent), forwards nothing (``-a -x``, ClearAllForwardings) and never asks for a password.
    With ``known_hosts`` (holding the image's recorded host key) any other host key is refused."""
    pin = (["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"] if known_hosts
           else ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
    return ["ssh", "-F", "/dev/null", "-a", "-x", "-i", str(key), "-p", str(int(port)),
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "ForwardAgent=no",
            "-o", "ForwardX11=no", "-o", "ClearAllForwardings=yes", "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no", "-o", "GlobalKnownHostsFile=/dev/null",
            *pin, "-o", "LogLevel=ERROR", f"root@{host}"]


def _config() -> Config:
    """fabric settings: no ssh_config files, our runner, captured output, failures as values."""
    return Config(lazy=True, overrides={
        "load_ssh_configs": False,
        "runners": {"remote": _Remote},
        "run": {"hide": True, "warn": True, "pty": False, "echo": False, "encoding": "utf-8"},
    })


class SSH:
    """root@127.0.0.1:port with the image's key; with ``host_key`` (the image's recorded
    ``ssh-ed25519 ...`` line) any other server key is rejected."""

    def __init__(self, port: int, key: Path, host: str = "127.0.0.1", host_key: str | None = None):
        self.host, self.port, self.key_path = host, port, key
        self.host_key = parse_public_key(host_key) if host_key else None
        self._conn: _Connection | None = None

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def connect(self, timeout: float = 5.0) -> None:
        """Log in, or raise (HostKeyMismatch when the server is not the pinned one)."""
        conn = _Connection(self.host, user="root", port=self.port, config=_config(), connect_kwargs={
            "pkey": paramiko.Ed25519Key.from_private_key_file(str(self.key_path)),
            "timeout": timeout, "banner_timeout": timeout, "auth_timeout": timeout,
            "channel_timeout": CHANNEL_OPEN_SECONDS, "allow_agent": False, "look_for_keys": False})
        if self.host_key is not None:
            conn.client.get_host_keys().add(self.known_hosts_name, self.host_key.get_name(),
                                            self.host_key)
            conn.client.set_missing_host_key_policy(_RejectOthers(self.host_key))
        else:  # nothing recorded to pin against (an image built before host keys were recorded)
            conn.client.set_missing_host_key_policy(paramiko.MissingHostKeyPolicy())
        try:
            conn.open()
        except paramiko.BadHostKeyException as e:
            conn.close()
            raise HostKeyMismatch(self.known_hosts_name, e.expected_key, e.key) from None
        except BaseException:
            conn.close()
            raise
        conn.transport.set_keepalive(5)
        self.close()
        self._conn = conn

    def try_connect(self, timeout: float = 5.0, banner_wait: float | None = None) -> bool:
        """One attempt; False if the guest's sshd is not there yet (a wrong host key raises).
        ``banner_wait`` (default ``timeout``) bounds the wait for sshd's banner: QEMU's user
        network accepts the TCP connection at once and holds it while the guest has no network
        yet, so a short wait there lets a boot poll often; the login itself gets ``timeout``."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as s:
                s.settimeout(banner_wait or timeout)
                if not s.recv(4).startswith(b"SSH"):
                    return False
            self.connect(timeout)
            return True
        except (OSError, paramiko.SSHException, EOFError):
            return False

    def _live(self) -> _Connection:
        if self._conn is None:
            raise HarnessError("SSH is not connected")
        if not self._conn.is_connected:
            raise HarnessError("SSH connection to the guest is gone")
        return self._conn

    @property
    def client(self) -> paramiko.SSHClient:
        return self._live().client

    def run(self, cmd: str | Sequence[str], *, timeout: float = 300, check: bool = True,
            stdin: str | None = None) -> Result:
        """Run a command (argv list or a shell line) with a deadline; stdout/stderr are captured."""
        command = _command(cmd)
        conn = self._live()
        t0 = time.monotonic()
        try:
            r = conn.run(command, timeout=timeout, in_stream=io.StringIO(stdin or ""))
        except CommandTimedOut as e:
            raise GuestCommandError(None, command, timeout, e.result.stdout) from None
        except (paramiko.SSHException, EOFError, OSError, ThreadException) as e:
            if time.monotonic() - t0 >= timeout:  # the deadline closed the channel during start
                raise GuestCommandError(None, command, timeout) from None
            raise HarnessError(f"SSH to the guest failed while running: {command}: {e}") from None
        if time.monotonic() - t0 >= timeout:
            # the deadline fired (invoke's timer closed the channel) but invoke did not say so:
            # its timed_out reads whether the timer thread is still alive, which races with the
            # channel's close (seen once: an xfstest hung past its watchdog came back as an
            # ordinary exit, and its hang went unreported)
            raise GuestCommandError(None, command, timeout, r.stdout)
        if r.exited == -1 and not conn.is_connected:
            # paramiko reports -1 when the connection closed before an exit status arrived:
            # the guest died (panic, poweroff) or QEMU exited.
            raise HarnessError(f"SSH connection dropped while running: {command}")
        res = Result(command, r.exited, r.stdout, r.stderr)
        if check and not res.ok:
            raise GuestCommandError(res, command)
        return res

    def _transfer(self, what: str, fn: Callable[[], object], timeout: float, stall: float) -> None:
        """Run an SFTP copy: each request answered within ``stall`` s, all within ``timeout`` s."""
        conn = self._live()
        fired = threading.Event()
        timer: threading.Timer | None = None
        try:
            channel = conn.sftp().get_channel()
            channel.settimeout(stall)
            def expire() -> None:
                fired.set()
                channel.close()
            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
            fn()
        except (OSError, EOFError, paramiko.SSHException) as e:
            conn.drop_sftp()
            if fired.is_set():
                raise TransferError(f"{what}: did not finish within {timeout:.0f}s") from None
            if isinstance(e, TimeoutError):
                raise TransferError(f"{what}: stalled (no answer from the guest's SFTP server "
                                    f"for {stall:.0f}s)") from None
            raise TransferError(f"{what}: {e or type(e).__name__}") from None
        finally:
            if timer is not None:
                timer.cancel()

    def put(self, local: Path, remote: str, *, timeout: float = TRANSFER_SECONDS,
            stall: float = STALL_SECONDS) -> None:
        """Copy a file to the guest, with deadlines."""
        conn = self._live()

        def copy() -> None:
            with open(local, "rb") as fh:
                conn.put(fh, remote, preserve_mode=False)
        self._transfer(f"copying {local} to the guest's {remote}", copy, timeout, stall)

    def get(self, remote: str, local: Path, *, timeout: float = TRANSFER_SECONDS,
            stall: float = STALL_SECONDS) -> None:
        """Copy a file from the guest (written under a temporary name, renamed when complete)."""
        conn = self._live()
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(local.name + ".part")

        def copy() -> None:
            with open(part, "wb") as fh:
                conn.get(remote, fh, preserve_mode=False)
        try:
            self._transfer(f"copying the guest's {remote} to {local}", copy, timeout, stall)
            os.replace(part, local)
        finally:
            part.unlink(missing_ok=True)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
