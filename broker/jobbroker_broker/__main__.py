"""``python -m jobbroker_broker``: run one broker process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys

from .app import Broker, ConfigError
from .settings import Settings

ENV_PREFIX = "JOBBROKER_"


def parse_settings(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="jobbroker-broker", description="Run a jobbroker broker.")
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        flag = "--" + field.name.replace("_", "-")
        env = os.environ.get(ENV_PREFIX + field.name.upper())
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", default=env in ("1", "true", "yes"))
        else:
            parser.add_argument(
                flag, type=type(default), default=type(default)(env) if env else default
            )
    args = parser.parse_args(argv)
    return Settings(**vars(args))


async def serve(settings: Settings) -> None:
    broker = Broker(settings)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"jobbroker listening on {settings.host}:{broker.port}", flush=True)
    await stop.wait()
    await broker.stop()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = parse_settings(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:
        sys.exit(f"jobbroker: {exc}")


if __name__ == "__main__":
    main()
