"""`kharness run ...` and `kharness sysrq ...` subcommands (workloads and evidence)."""

from __future__ import annotations

import argparse


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    """Register the workload and evidence subcommands (filled in by later stages)."""
