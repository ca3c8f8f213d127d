"""The sandbox's sudo login: pg-main-2 is reached the way production hosts are, as a login user
(``dbrunbook-ops``) other than the servers' OS user, through ``sudo -n -u <os user>``.

It needs root: a second OS user, a sudoers rule and an sshd run as that user. As root this is done
directly; as a normal user through ``sudo -n`` when that works without a password. Otherwise pg-main-2
keeps a direct login and ``sandbox.status`` says why in ``notes``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat

from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import LocalExecutor, RunSettings
from dbrunbook.sandbox.layout import OPS_USER, Layout

SUDOERS_DIR = "/etc/sudoers.d"


def sudoers_path(os_user: str) -> str:
    # sudo skips files in sudoers.d whose names contain a dot or end in '~'.
    return f"{SUDOERS_DIR}/dbrunbook-sandbox-{re.sub(r'[^A-Za-z0-9_-]', '-', os_user)}"


def sudoers_rule(os_user: str) -> str:
    """The login user may run anything as the servers' OS user, without a password, and nothing else."""
    return f"# dbrunbook sandbox: pg-main-2 logs in as {OPS_USER} and sudoes to {os_user}\n" + (
        f"{OPS_USER} ALL=({os_user}) NOPASSWD: ALL\n"
    )


def note_path(layout: Layout) -> str:
    return str(layout.root / "sudo-login.note")


class OpsUser:
    """Sets up the login user, its sudoers rule and the folder of its sshd."""

    def __init__(self, layout: Layout, settings: RunSettings) -> None:
        self.layout = layout
        # root when we are root; else every command goes through `sudo -n -u root`.
        self.admin = LocalExecutor("sandbox", settings, os_user="root")
        self.as_ops = LocalExecutor("sandbox", settings, os_user=OPS_USER)

    def unavailable(self) -> str | None:
        """Why the sudo login cannot be set up here, or None when it can."""
        # visudo lives in /usr/sbin, which a normal user's PATH often lacks (sudo's secure_path has it).
        admin_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
        if shutil.which("sudo") is None or shutil.which("visudo", path=admin_path) is None:
            return "sudo is not installed (apt-get install sudo), so pg-main-2 logs in directly as the OS user"
        if self.layout.tool_user != "root":
            probe = self.admin.run(Command(("true",), description="passwordless sudo?", mutating=False, check=False))
            if not probe.ok:
                return (
                    "no passwordless sudo for this user, so the sandbox cannot create the login user "
                    f"{OPS_USER}: pg-main-2 logs in directly as {self.layout.os_user}"
                )
        for parent in reversed(self.layout.root.parents):
            if not parent.stat().st_mode & stat.S_IXOTH:
                return (
                    f"{parent} is not searchable by other users, so {OPS_USER}'s sshd cannot reach the sandbox: "
                    f"pg-main-2 logs in directly as {self.layout.os_user}"
                )
        return None

    def ensure(self) -> None:
        known = self.admin.run(
            Command(("id", "-u", OPS_USER), description="look up the login user", mutating=False, check=False)
        )
        if not known.ok:
            self.admin.run(
                Command(
                    (
                        "useradd",
                        "--system",
                        "--create-home",
                        "--home-dir",
                        f"/var/lib/{OPS_USER}",
                        "--shell",
                        "/bin/bash",
                        OPS_USER,
                    ),
                    description=f"create the login user {OPS_USER}",
                )
            )
        # Checked with visudo before it is installed: a broken file in sudoers.d breaks sudo for everyone.
        install = (
            't=$(mktemp) && cat > "$t" && visudo -cqf "$t" && install -m 0440 -o root -g root "$t" "$1"; '
            'rc=$?; rm -f "$t"; exit $rc'
        )
        self.admin.run(
            Command(
                ("sh", "-c", install, "sh", sudoers_path(self.layout.os_user)),
                description="install the sudoers rule",
                stdin=sudoers_rule(self.layout.os_user),
            )
        )
        self.admin.run(
            Command(
                ("install", "-d", "-m", "0755", "-o", OPS_USER, str(self.layout.ssh_ops)),
                description=f"folder of {OPS_USER}'s sshd",
            )
        )

    def remove_folder(self) -> None:
        """Its sshd's folder belongs to the login user: a normal user's purge could not delete it."""
        self.admin.run(Command(("rm", "-rf", str(self.layout.ssh_ops)), description=f"remove {OPS_USER}'s sshd folder"))
