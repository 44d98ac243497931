"""pytest plugin (registered through the `pytest11` entry point): `pytest --kernel=NAME`."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("kharness", "kharness kernel patch testing")
    g.addoption("--kernel", action="store", default=None,
                help="kernel definition to test (kernels/NAME.yaml); VM tests need it")
    g.addoption("--baseline", action="store", default=None,
                help="kernel to compare against (default: the definition --kernel is based on)")
    g.addoption("--fs", action="store", default=None, help="comma-separated filesystems (ext4,xfs,ocfs2)")
    g.addoption("--disk", action="store", default=None, help="comma-separated disk kinds (nvme,virtio)")
    g.addoption("--accel", action="store", default=None, choices=["kvm", "tcg"],
                help="force the accelerator (default: probe)")
    g.addoption("--runs", action="store", type=int, default=None, help="fio runs per side")
    g.addoption("--results-dir", action="store", default=None, help="where run directories go")
    g.addoption("--quick", action="store_true", default=False,
                help="fewer cells and shorter runtimes (CI profile)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: boots real QEMU guests with real kernels (slow)")
    config.addinivalue_line("markers", "build: builds or imports a real kernel tree (slow)")
