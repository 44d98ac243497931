"""Which executor a front end's ``--ray ADDRESS`` asks for."""

from __future__ import annotations

from typing import Any

from .base import Executor
from .local import LocalExecutor


def executor_for(address: str | None, **options: Any) -> Executor:
    """The executor a front end's ``--ray ADDRESS`` asks for: None or '' -> LocalExecutor; an
    address (``auto``, ``HOST:6379``, ``ray://HOST:10001``) -> RayExecutor connected to that
    cluster (``options`` go to RayExecutor). HarnessError naming ``pip install 'kharness[ray]'``
    when Ray is not installed."""
    if not address:
        return LocalExecutor()
    from .ray import RayExecutor  # optional dependency: ray (imported only when chosen)
    return RayExecutor(address, **options)
