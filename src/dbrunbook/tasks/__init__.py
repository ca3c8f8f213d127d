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
    restore_tasks,
    sandbox_tasks,
    schedule_tasks,
    wal_tasks,
)

namespace = Collection()
namespace.add_collection(Collection.from_module(inventory_tasks, name="inventory"))
namespace.add_collection(Collection.from_module(sandbox_tasks, name="sandbox"))
namespace.add_collection(Collection.from_module(hosts_tasks, name="hosts"))
namespace.add_collection(Collection.from_module(archive_tasks, name="archive"))
namespace.add_collection(Collection.from_module(backup_tasks, name="backup"))
namespace.add_collection(Collection.from_module(restore_tasks, name="restore"))
namespace.add_collection(Collection.from_module(wal_tasks, name="wal"))
namespace.add_collection(Collection.from_module(keys_tasks, name="keys"))
namespace.add_collection(Collection.from_module(binlog_tasks, name="binlog"))
namespace.add_collection(Collection.from_module(drill_tasks, name="drill"))
namespace.add_collection(Collection.from_module(schedule_tasks, name="schedule"))

__all__ = ["namespace"]
