"""Shared fixtures for the real tests: the kernels and image are built once (and cached)."""

import pytest

from harness.image.build import build_image
from harness.kernel.build import build_kernel
from harness.vm.accel import choose_accel


@pytest.fixture(scope="session")
def baseline_kernel():
    return build_kernel("baseline")


@pytest.fixture(scope="session")
def patched_kernel():
    return build_kernel("patched")


@pytest.fixture(scope="session")
def image():
    return build_image("debian-bookworm")


@pytest.fixture(scope="session")
def accel(baseline_kernel):
    acc = choose_accel(baseline_kernel.bzimage)
    print(f"accelerator: {acc.name}: {acc.reason}")
    return acc
