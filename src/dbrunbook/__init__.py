"""dbrunbook: backups, restore drills, migrations and runbooks for PostgreSQL and MariaDB/MySQL fleets."""

__version__ = "0.1.0"


def build_digest() -> str:
    """SHA-256 (first 16 hex) of this package's Python sources: two copies that both say 0.1.0 but differ
    (a controller upgraded from a git checkout, a host not set up again) tell each other apart by it."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
