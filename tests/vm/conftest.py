"""Shared fixtures for the real tests: one testbed (kernels, image, accelerator) built once."""

import pytest

from harness.run.testbed import Testbed


@pytest.fixture(scope="session")
def testbed():
    bed = Testbed(["baseline", "patched"]).prepare()
    print(f"accelerator: {bed.accel.name}: {bed.accel.reason}")
    return bed


@pytest.fixture(scope="session")
def baseline_kernel(testbed):
    return testbed.kernel("baseline")


@pytest.fixture(scope="session")
def patched_kernel(testbed):
    return testbed.kernel("patched")


@pytest.fixture(scope="session")
def image(testbed):
    return testbed.image


@pytest.fixture(scope="session")
def accel(testbed):
    return testbed.accel
