"""SSH to the guest with paramiko: commands with deadlines, file copies both ways."""

from __future__ import annotations

import logging
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import paramiko

from ..errors import HarnessError

logging.getLogger("paramiko").setLevel(logging.CRITICAL)


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


def _command(cmd: str | Sequence[str]) -> str:
    return cmd if isinstance(cmd, str) else shlex.join(list(cmd))


class SSH:
    """A paramiko connection to root@127.0.0.1:port with the image's key."""

    def __init__(self, port: int, key: Path, host: str = "127.0.0.1"):
        self.host, self.port, self.key_path = host, port, key
        self._client: paramiko.SSHClient | None = None

    def connect(self, timeout: float = 5.0) -> None:
        client = paramiko.SSHClient()
        # Host keys are generated per image and the port is ephemeral on loopback; there is
        # nothing to pin them against, so accept and do not record them.
        client.set_missing_host_key_policy(paramiko.MissingHostKeyPolicy())
        client.connect(self.host, self.port, username="root",
                       pkey=paramiko.Ed25519Key.from_private_key_file(str(self.key_path)),
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                       allow_agent=False, look_for_keys=False)
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(5)
        self._client = client

    def try_connect(self, timeout: float = 5.0) -> bool:
        """One attempt; False if the guest's sshd is not there yet."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as s:
                s.settimeout(timeout)
                if not s.recv(4).startswith(b"SSH"):
                    return False
            self.connect(timeout)
            return True
        except (OSError, paramiko.SSHException, EOFError):
            return False

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            raise HarnessError("SSH is not connected")
        return self._client

    def run(self, cmd: str | Sequence[str], *, timeout: float = 300, check: bool = True,
            stdin: str | None = None) -> Result:
        """Run a command (argv list or a shell line) with a deadline; stdout/stderr are captured."""
        command = _command(cmd)
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise HarnessError("SSH connection to the guest is gone")
        chan = transport.open_session(timeout=10)
        chan.settimeout(1.0)
        chan.exec_command(command)
        if stdin is not None:
            chan.sendall(stdin.encode())
        chan.shutdown_write()
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while True:
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                chan.close()
                raise GuestCommandError(None, command, timeout, out.decode(errors="replace"))
            if transport is None or not transport.is_active():
                raise HarnessError(f"SSH connection dropped while running: {command}")
            time.sleep(0.02)
        status = chan.recv_exit_status()
        if status == -1 and not transport.is_active():
            # paramiko reports -1 when the connection closed before an exit status arrived:
            # the guest died (panic, poweroff) or QEMU exited.
            raise HarnessError(f"SSH connection dropped while running: {command}")
        res = Result(command, status, out.decode(errors="replace"), err.decode(errors="replace"))
        chan.close()
        if check and not res.ok:
            raise GuestCommandError(res, command)
        return res

    def put(self, local: Path, remote: str) -> None:
        """Copy a file to the guest."""
        with self.client.open_sftp() as sftp:
            sftp.put(str(local), remote)

    def get(self, remote: str, local: Path) -> None:
        """Copy a file from the guest."""
        local.parent.mkdir(parents=True, exist_ok=True)
        with self.client.open_sftp() as sftp:
            sftp.get(remote, str(local))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
