"""jobbroker's dashboard and HTTP/JSON API: a web process that is a gRPC client of the broker.

    jobbroker dashboard --address BROKER            # the standalone process (uvicorn)

    from jobbroker_dashboard import DashboardSettings, create_app
    app = create_app(DashboardSettings(address="broker:50051"))   # any ASGI app may mount it

Needs the ``dashboard`` extra (``pip install 'jobbroker[dashboard]'``): Starlette, Jinja2 and
uvicorn. Importing this package does not import them, so ``jobbroker`` can list the command
without the extra and say what to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .settings import DashboardSettings

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["DashboardSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        return importlib.import_module(".app", __name__).create_app
    raise AttributeError(f"module 'jobbroker_dashboard' has no attribute {name!r}")
