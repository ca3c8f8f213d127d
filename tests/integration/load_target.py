"""The servers the load harness works on (see load.py): a login, plain identifiers, and the reconnect
helpers every background writer uses."""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from dbrunbook.redact import Secret

Engine = Literal["postgresql", "mariadb"]
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Target:
    """One server and a login on it."""

    engine: Engine
    port: int
    user: str
    password: Secret
    database: str
    host: str = "127.0.0.1"

    def connect(self, *, autocommit: bool = True, timeout: float = 5) -> Any:
        if self.engine == "postgresql":
            import psycopg

            return psycopg.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password.reveal(),
                dbname=self.database,
                autocommit=autocommit,
                connect_timeout=max(1, int(timeout)),
                # Client-side binding, as the project's driver: utility statements take parameters only so.
                cursor_factory=psycopg.ClientCursor,
            )
        import pymysql

        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password.reveal(),
            database=self.database or None,
            autocommit=autocommit,
            connect_timeout=timeout,
        )

    def on(self, database: str) -> Target:
        return Target(self.engine, self.port, self.user, self.password, database, self.host)

    def execute(self, *statements: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run statements on a fresh autocommit connection; the last one's rows."""
        rows: list[tuple[Any, ...]] = []
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql, params or None)
                rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
        return rows


def ident(name: str) -> str:
    """Table and database names here are the tests' own: refuse anything that would need quoting."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


def ensure_database(admin: Target, name: str) -> Target:
    if admin.engine == "postgresql":
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", params=(name,)):
            admin.execute(f"CREATE DATABASE {ident(name)}")
    else:
        admin.execute(f"CREATE DATABASE IF NOT EXISTS {ident(name)}")
    return admin.on(name)


def drop_database(admin: Target, name: str) -> None:
    on = admin.on("postgres" if admin.engine == "postgresql" else "")
    extra = " WITH (FORCE)" if admin.engine == "postgresql" else ""
    on.execute(f"DROP DATABASE IF EXISTS {ident(name)}{extra}")


def rollback_or_drop(conn: Any) -> Any:
    """Roll back after an error; a connection that cannot is dropped (None: reconnect next time)."""
    try:
        conn.rollback()
        return conn
    except Exception:
        with contextlib.suppress(Exception):
            conn.close()
        return None


def reconnect(old: Any, target: Target, errors: list[str], *, autocommit: bool) -> Any:
    if old is not None:
        with contextlib.suppress(Exception):
            old.close()
    try:
        return target.connect(autocommit=autocommit, timeout=2)
    except Exception as exc:
        errors.append(f"connect: {type(exc).__name__}")
        time.sleep(0.05)  # the server is down: do not spin
        return None
