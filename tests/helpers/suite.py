"""Run the kernel suite as a user runs it (`pytest suite/test_aio_dsync.py ...`) in a subprocess,
with its own results directory, store and junit file under ``tmp``."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_suite(tmp: Path, *options: str, timeout: float = 2400) -> tuple[subprocess.CompletedProcess, dict]:
    """The finished suite process (its stdout's tail printed) and its junit test cases by name."""
    junit = tmp / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "suite/test_aio_dsync.py", *options, f"--results-dir={tmp / 'results'}",
         f"--junitxml={junit}", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "KHARNESS_STORE": str(tmp / "store.sqlite")})
    print(proc.stdout[-6000:])
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")} if junit.exists() else {}
    return proc, cases
