"""dbrunbook: backups, restore drills, migrations and runbooks for PostgreSQL and MariaDB/MySQL fleets."""

__version__ = "0.1.0"
