"""`python -m tradepulse.trainer`: run one trainer replica until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys

from tradepulse.common.logging import configure_logging, get_logger
from tradepulse.trainer.app import Trainer
from tradepulse.trainer.settings import TrainerSettings


async def run(settings: TrainerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    trainer = Trainer(settings)
    await trainer.start()
    await stop.wait()
    get_logger("trainer").info("stopping")
    await trainer.stop()


def main() -> int:
    settings = TrainerSettings()
    configure_logging("trainer", settings.log_level, settings.log_json)
    try:
        asyncio.run(run(settings))
    except ConnectionError as exc:
        get_logger("trainer").error("cannot start", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
