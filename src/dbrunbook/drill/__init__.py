"""Restore drills: choose a backup, restore it into a disposable server, prove it, measure RTO and RPO."""
