"""The task tree shared by ``invoke`` (the repository's tasks.py) and the ``dbrunbook`` console script.

Each later capability adds one module and one line here (backup, restore, archive, drill, migrate,
replica, routines, runbook).
"""

from invoke.collection import Collection

from dbrunbook.tasks import (
    archive_tasks,
    backup_tasks,
    binlog_tasks,
    drill_tasks,
    hosts_tasks,
    inventory_tasks,
    keys_tasks,
    migrate_tasks,
    restore_tasks,
    sandbox_tasks,
    schedule_tasks,
    trust_tasks,
    wal_tasks,
)

namespace = Collection()
namespace.add_collection(Collection.from_module(inventory_tasks, name="inventory"))
namespace.add_collection(Collection.from_module(sandbox_tasks, name="sandbox"))
namespace.add_collection(Collection.from_module(hosts_tasks, name="hosts"))
namespace.add_collection(Collection.from_module(archive_tasks, name="archive"))
backup = Collection.from_module(backup_tasks, name="backup")
backup.add_task(trust_tasks.sign)
namespace.add_collection(backup)
namespace.add_collection(Collection.from_module(restore_tasks, name="restore"))
namespace.add_collection(Collection.from_module(wal_tasks, name="wal"))
keys = Collection.from_module(keys_tasks, name="keys")
keys.add_task(trust_tasks.signing_init)
namespace.add_collection(keys)
namespace.add_collection(Collection.from_module(binlog_tasks, name="binlog"))
namespace.add_collection(Collection.from_module(drill_tasks, name="drill"))
namespace.add_collection(Collection.from_module(schedule_tasks, name="schedule"))

__all__ = ["namespace"]
migrate = Collection("migrate")
migrate.add_collection(Collection.from_module(migrate_tasks, name="shadow"))
namespace.add_collection(migrate)
