"""Database engines behind one interface, loaded lazily by name (a MariaDB-only fleet never imports psycopg)."""

from __future__ import annotations

from importlib import import_module

from dbrunbook.engines.base import BinaryInfo, EngineDriver, Login, ServerProbe
from dbrunbook.errors import EngineNotSupported

_REGISTRY = {
    "postgresql": ("dbrunbook.engines.postgresql.engine", "PostgreSQLEngine"),
    "mariadb": ("dbrunbook.engines.mariadb.engine", "MariaDBEngine"),
    "mysql": ("dbrunbook.engines.mariadb.engine", "MySQLEngine"),
}


def get_engine(name: str) -> EngineDriver:
    try:
        module, cls = _REGISTRY[str(name)]
    except KeyError:
        raise EngineNotSupported(f"engine '{name}' is not supported (known: {', '.join(_REGISTRY)})") from None
    driver: EngineDriver = getattr(import_module(module), cls)()
    return driver


__all__ = ["BinaryInfo", "EngineDriver", "Login", "ServerProbe", "get_engine"]
