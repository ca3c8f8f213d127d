"""The frame every task runs in: inventory loading, run settings, and turning errors into exit codes.

Task bodies stay thin: they parse flags, call plain functions that take plain data, and print the result.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task as invoke_task

from dbrunbook.errors import DbrunbookError, UsageError
from dbrunbook.execution.audit import AuditLog
from dbrunbook.execution.executor import HostExecutor, RunSettings
from dbrunbook.execution.hosts import executor_for
from dbrunbook.inventory.loader import LoadedInventory, choose_env, load_inventory
from dbrunbook.inventory.model import Cluster
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.output import NORMAL, QUIET, VERBOSE, LogFile, Output
from dbrunbook.redact import REDACTOR
from dbrunbook.tasks.conventions import (
    LOGGING_HELP,
    DbrunbookTask,
    TaskOptions,
    current_options,
    program_name,
    refused_config,
    reset_options,
    set_options,
)

if TYPE_CHECKING:
    from dbrunbook.context import ClusterContext

P = ParamSpec("P")
R = TypeVar("R")

# Help texts every task shares, so that a flag reads the same everywhere.
ENV = "environment: inventory/<env>.yaml, or a path to an inventory file (default $DBRUNBOOK_ENV, else dev)"
CLUSTER = "the cluster (optional when the inventory has one)"
CLUSTERS = "clusters: names or globs, comma-separated, !name excludes (default: every cluster it applies to)"
LIMIT = "only clusters whose inventory labels match every key=value given (tier=prod,region=eu)"
FORKS = "work on N clusters at a time (default 1)"


@dataclass
class TaskRun:
    """State of one task invocation."""

    name: str
    env: str
    out: Output
    settings: RunSettings
    # False when no --env and no $DBRUNBOOK_ENV chose the environment: a missing default file then says how.
    env_chosen: bool = True
    _loaded: LoadedInventory | None = None
    _resolver: SecretResolver | None = None
    # The cluster rides along so its id is never reused by a later copy (a drill's local place).
    _executors: dict[str, tuple[Cluster, HostExecutor]] = field(default_factory=dict)

    @classmethod
    def start(cls, name: str, *, env: str | None, json_mode: bool, dry_run: bool = False) -> TaskRun:
        env, chosen = choose_env(env)
        opts = current_options()
        if opts.log is not None:
            opts.log.task = name
            opts.log.write(f"started (env {env}{', dry run' if dry_run else ''})")
        out = Output(json_mode=json_mode, verbosity=opts.verbosity, log=opts.log)
        audit = AuditLog(task=name, env=env)
        audit.listeners.append(out.command)
        return cls(
            name=name,
            env=env,
            out=out,
            settings=RunSettings(audit=audit, dry_run=dry_run),
            env_chosen=chosen,
        )

    @property
    def loaded(self) -> LoadedInventory:
        if self._loaded is None:
            self._loaded = load_inventory(self.env, chosen=self.env_chosen, program=program_name(), task=self.name)
        return self._loaded

    @property
    def resolver(self) -> SecretResolver:
        if self._resolver is None:
            self._resolver = SecretResolver(self.loaded.base_dir)
        return self._resolver

    def clusters(self, only: str | None = None) -> dict[str, Cluster]:
        clusters = self.loaded.inventory.clusters
        if only is None:
            return dict(clusters)
        if only not in clusters:
            from dbrunbook.errors import InventoryError

            raise InventoryError(f"{self.loaded.path}: no cluster '{only}' (known: {', '.join(sorted(clusters))})")
        return {only: clusters[only]}

    def select(self, spec: str | None, limit: str | None = None) -> list[str]:
        """The clusters a fleet task acts on: ``--cluster`` names, globs and ``!exclusions``, ``--limit`` labels
        (see :mod:`dbrunbook.fleet`)."""
        from dbrunbook.fleet import select

        clusters = self.loaded.inventory.clusters
        return select({n: c.labels for n, c in clusters.items()}, spec, limit)

    def executor(self, cluster: Cluster, host_name: str) -> HostExecutor:
        key = f"{id(cluster)}:{host_name}"
        if key not in self._executors:
            ex = executor_for(host_name, cluster.hosts[host_name], self.settings, self.resolver)
            self._executors[key] = (cluster, ex)
        return self._executors[key][1]

    def cluster_context(self, name: str | None) -> ClusterContext:
        """The one cluster a task works on: --cluster, or the only cluster of the inventory."""
        from dbrunbook.context import ClusterContext

        clusters = self.clusters(name)
        if len(clusters) != 1:
            from dbrunbook.errors import InventoryError

            raise InventoryError(
                f"{self.loaded.path} has {len(clusters)} clusters; name one with --cluster "
                f"({', '.join(sorted(clusters))})"
            )
        ((cname, cluster),) = clusters.items()
        return ClusterContext(cname, cluster, self.resolver, self.settings, self.executor)

    @contextmanager
    def showing_progress(self, title: str) -> Iterator[None]:
        """While the block runs, host streams' progress events (a backup's or restore's bytes) go to a bar on a
        terminal, or a line every 10% or minute; every executor of the run hands them over."""
        with self.out.progress(title) as show:
            self.settings.progress = show
            try:
                yield
            finally:
                self.settings.progress = None

    def find_host(self, host: str) -> tuple[str, Cluster]:
        """A host anywhere in the inventory (restores may go to another cluster's host)."""
        for cname, cluster in self.loaded.inventory.clusters.items():
            if host in cluster.hosts:
                return cname, cluster
        from dbrunbook.errors import InventoryError

        raise InventoryError(f"{self.loaded.path}: no host '{host}' in any cluster")

    def close(self) -> None:
        for _, ex in self._executors.values():
            ex.close()
        self._executors.clear()


def error_document(exc: DbrunbookError) -> dict[str, Any]:
    return {
        "ok": False,
        "error": {
            "domain": exc.domain,
            "type": type(exc).__name__,
            "exit_code": exc.exit_code,
            "message": REDACTOR.redact(exc.one_line()),
        },
    }


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Expected failures become one redacted line on stderr (plus a JSON error document with ``--json``)
    and the error's exit code; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        json_mode = bool(kwargs.get("json"))
        log = current_options().log
        try:
            return fn(*args, **kwargs)
        except DbrunbookError as exc:
            if json_mode and not getattr(exc, "reported", False):
                sys.stdout.write(json.dumps(error_document(exc), indent=2) + "\n")
            line = REDACTOR.redact(f"dbrunbook: {exc.domain} error: {exc.one_line()}")
            if log is not None:
                log.write(f"failed (exit {exc.exit_code}): {line}")
            raise Exit(line, code=exc.exit_code) from None
        except KeyboardInterrupt:
            if log is not None:
                log.write("interrupted (exit 130)")
            raise Exit("dbrunbook: interrupted", code=130) from None

    return wrapper


_LOGGING_PARAMS = (
    inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool),
    inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool),
    inspect.Parameter("log_file", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None),
)


def task(
    *, name: str | None = None, help: dict[str, str] | None = None, iterable: list[str] | None = None
) -> Callable[[Callable[..., None]], DbrunbookTask]:
    """``@task`` with the conventions of :mod:`dbrunbook.tasks.conventions`: only the documented short flags,
    no positional parameters (a parameter without a default is a required flag), ``-v``/``-q``/``--log-file``
    on every task, and Invoke's ``--dry``/``--echo``/``--warn-only`` refused before the body runs."""

    def decorate(body: Callable[..., None]) -> DbrunbookTask:
        sig = inspect.signature(body)
        params = list(sig.parameters.values())
        required = [p.name for p in params[1:] if p.default is inspect.Parameter.empty]

        @guarded
        def checked(c: Context, **kwargs: Any) -> None:
            why = refused_config(c.config.run)
            if why is not None:
                raise UsageError(why)
            missing = [f"--{n.replace('_', '-')}" for n in required if kwargs.get(n) is None]
            if missing:
                raise UsageError(f"{' and '.join(missing)} required", hint="the task's --help lists its flags")
            body(c, **kwargs)

        @functools.wraps(body)
        def wrapper(
            c: Context, *, verbose: bool = False, quiet: bool = False, log_file: str | None = None, **kwargs: Any
        ) -> None:
            if verbose and quiet:
                raise Exit("dbrunbook: usage error: -v and -q contradict each other", code=UsageError.exit_code)
            verbosity = VERBOSE if verbose else QUIET if quiet else NORMAL
            token = set_options(TaskOptions(verbosity, LogFile(log_file) if log_file else None))
            try:
                checked(c, **kwargs)
            finally:
                reset_options(token)

        # Invoke reads the flags from the signature: the body's own, then the logging ones.
        wrapper.__signature__ = sig.replace(parameters=[*params, *_LOGGING_PARAMS])  # type: ignore[attr-defined]
        made: DbrunbookTask = invoke_task(
            name=name,
            help={**(help or {}), **LOGGING_HELP},
            iterable=iterable,
            auto_shortflags=False,
            positional=[],
            klass=DbrunbookTask,
        )(wrapper)
        return made

    return decorate
