"""The default drill place, ``local``: a disposable server on the machine dbrunbook runs on.

A drill restores a whole server; on a live replica's host it would take that replica's disk, memory and
I/O. So unless the inventory names a drill host, the drill runs here, like the sandbox: as an
unprivileged OS user when dbrunbook runs as root, with binaries found on this machine.
"""

from __future__ import annotations

import os
import pwd

from dbrunbook.engines import get_engine
from dbrunbook.errors import DrillError
from dbrunbook.inventory.model import LOCAL, Cluster, Drill, Host
from dbrunbook.sandbox.layout import SANDBOX_USER as DRILL_USER  # servers never run as root

__all__ = ["DRILL_USER", "LOCAL", "find_bin_dir", "local_host", "local_place"]


def local_place(cluster: Cluster) -> Cluster | None:
    """The cluster with a ``local`` host added when its drills restore on this machine (the default);
    None when ``drill.host`` names an inventory host."""
    settings = cluster.drill_settings()
    if (settings.host or LOCAL) != LOCAL:
        return None
    return cluster.model_copy(update={"hosts": {**cluster.hosts, LOCAL: local_host(cluster, settings)}})


def local_host(cluster: Cluster, settings: Drill) -> Host:
    """The inventory entry a local drill restores on (its data directory and port are filled in later)."""
    user = settings.os_user or (DRILL_USER if os.geteuid() == 0 else None)
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise DrillError(
                f"a local drill runs its server as OS user {user!r}, which does not exist on this machine",
                hint="create that user, set drill.os_user, or point drill.host at a restore host",
            ) from None
    bin_dir = settings.bin_dir or find_bin_dir(cluster)
    return Host.model_validate(
        {
            "role": "replica",
            "connection": {"type": "local"},
            "port": cluster.primary()[1].port,
            "data_dir": "/nonexistent",
            "bin_dir": bin_dir,
            "os_user": user,
        }
    )


def find_bin_dir(cluster: Cluster) -> str | None:
    """Server binaries on this machine for the cluster's engine (None: from PATH); raises when there are none."""
    drills = get_engine(cluster.engine.value).drills
    if drills is None:
        raise DrillError(f"{cluster.engine.value} drills are not available yet")
    return drills.server_bin_dir(cluster)
