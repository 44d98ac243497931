import pytest


def pytest_collection_modifyitems(config, items):
    if config.getoption("--kernel") is None:
        skip = pytest.mark.skip(reason="the kernel suite needs --kernel NAME, e.g. pytest --kernel=patched")
        for item in items:
            if "kernel_suite" in item.keywords:
                item.add_marker(skip)
