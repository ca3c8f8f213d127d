"""Schema migrations: online shadow-table changes (``migrate.shadow``), later versioned migrations."""
