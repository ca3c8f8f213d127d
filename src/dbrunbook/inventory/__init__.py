"""Inventory: which clusters exist, their hosts, how to reach them, and references to their secrets."""

from dbrunbook.inventory.loader import LoadedInventory, default_env, load_inventory, parse_inventory
from dbrunbook.inventory.model import Cluster, Engine, Host, Inventory, Role
from dbrunbook.inventory.secrets import SecretResolver

__all__ = [
    "Cluster",
    "Engine",
    "Host",
    "Inventory",
    "LoadedInventory",
    "Role",
    "SecretResolver",
    "default_env",
    "load_inventory",
    "parse_inventory",
]
