"""Per-image SSH keys, generated locally and never committed."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def generate_ed25519(private_path: Path, comment: str = "kharness") -> str:
    """Write a new OpenSSH ed25519 private key (mode 0600) and .pub; return the public line."""
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                        serialization.PublicFormat.OpenSSH).decode() + f" {comment}"
    # A fresh file (O_EXCL, never through a symlink): O_CREAT's mode does not change an existing
    # file's, and a key written into a world-readable one would be readable by everyone.
    private_path.unlink(missing_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(priv)
    private_path.with_suffix(".pub").write_text(pub + "\n")
    return pub
