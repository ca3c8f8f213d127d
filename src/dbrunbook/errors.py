"""The exception tree.

One root, one base per domain. Every class carries a distinct process exit code so cron jobs and
runbooks can branch on the failure class, and every message is one line a tired operator can act on.
Messages never contain secrets: callers build them from redacted text only.
"""

from __future__ import annotations


class DbrunbookError(Exception):
    """Root of every expected failure. Anything else is a bug and may show a traceback."""

    exit_code = 1
    domain = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # Collapse to one line: a multi-line driver message must not break log parsers.
        flat = " ".join(message.split())
        super().__init__(flat)
        self.message = flat
        self.hint = hint
        # Set when the task already printed its full result (with the failure in it) as its JSON document,
        # so stdout stays one document.
        self.reported = False

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


# --- the command line ------------------------------------------------------------------------------


class UsageError(DbrunbookError):
    """The command line asks for something dbrunbook refuses: one of Invoke's own flags that would not do what
    it says (``-R``/``--dry``, ``--echo``, ``--warn-only``), a required flag missing, ``-v`` with ``-q``."""

    exit_code = 2
    domain = "usage"


# --- configuration -------------------------------------------------------------------------------


class ConfigError(DbrunbookError):
    exit_code = 10
    domain = "config"


class InventoryError(ConfigError):
    """The inventory file is missing, malformed or inconsistent."""

    exit_code = 11
    domain = "inventory"


class SecretError(ConfigError):
    """A secret reference cannot be resolved."""

    exit_code = 12
    domain = "secret"


# --- reaching hosts ------------------------------------------------------------------------------


class HostError(DbrunbookError):
    exit_code = 20
    domain = "host"


class HostUnreachableError(HostError):
    """The host does not answer (refused, timed out, name does not resolve)."""

    exit_code = 21


class HostAuthError(HostError):
    """The host answered but refused our key or user."""

    exit_code = 22


class CommandFailed(HostError):
    """A command on a host exited non-zero."""

    exit_code = 23


class SecretLeakRefused(HostError):
    """A command was built with a secret where only non-secret data may go (argv, inline env)."""

    exit_code = 24


class HostKeyUnknown(HostError):
    """The SSH host presented a key that no known_hosts file lists: first contact, or an impostor."""

    exit_code = 25


class HostKeyChanged(HostError):
    """The SSH host presented a key other than the one known_hosts records for it. Never accepted automatically."""

    exit_code = 26


# --- databases -----------------------------------------------------------------------------------


class DatabaseError(DbrunbookError):
    exit_code = 30
    domain = "database"


class DatabaseUnreachableError(DatabaseError):
    exit_code = 31


class DatabaseAuthError(DatabaseError):
    exit_code = 32


class QueryFailed(DatabaseError):
    """A statement failed. ``code`` is the server's own error code as text (PostgreSQL's SQLSTATE, MariaDB's
    errno), so callers decide by code with :func:`is_lock_timeout` and friends, never by message text."""

    exit_code = 33

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class EngineNotSupported(DatabaseError):
    exit_code = 34


class ToolStateTooNew(DatabaseError):
    """The database's dbrunbook tool state was bootstrapped by a newer dbrunbook than this one."""

    exit_code = 35


class ToolLockBusy(DatabaseError):
    """Another session holds the dbrunbook advisory lock this run needs."""

    exit_code = 36


# Server error codes by meaning. SQLSTATEs (five characters) and MariaDB/MySQL errnos (digits) never collide.
LOCK_TIMEOUT_CODES = frozenset({"55P03", "1205"})  # lock_not_available; ER_LOCK_WAIT_TIMEOUT (row and metadata)
DEADLOCK_CODES = frozenset({"40P01", "1213"})  # deadlock_detected; ER_LOCK_DEADLOCK
SERIALIZATION_CODES = frozenset({"40001"})  # serialization_failure (PostgreSQL REPEATABLE READ/SERIALIZABLE)
# query_canceled (statement_timeout or a cancel); MariaDB ER_STATEMENT_TIMEOUT; MySQL ER_QUERY_TIMEOUT
STATEMENT_TIMEOUT_CODES = frozenset({"57014", "1969", "3024"})


def error_code(err: BaseException) -> str | None:
    return err.code if isinstance(err, QueryFailed) else None


def is_lock_timeout(err: BaseException) -> bool:
    return error_code(err) in LOCK_TIMEOUT_CODES


def is_deadlock(err: BaseException) -> bool:
    return error_code(err) in DEADLOCK_CODES


def is_statement_timeout(err: BaseException) -> bool:
    return error_code(err) in STATEMENT_TIMEOUT_CODES


def is_retryable(err: BaseException) -> bool:
    """Failures that say nothing about the statement itself, only about a concurrent session: the same
    transaction may succeed when run again. A statement timeout is not one: the work was too slow."""
    return error_code(err) in LOCK_TIMEOUT_CODES | DEADLOCK_CODES | SERIALIZATION_CODES


# --- checks and safety -----------------------------------------------------------------------------


class CheckFailed(DbrunbookError):
    """A health or consistency check found a problem (role mismatch, version mismatch...)."""

    exit_code = 40
    domain = "check"


class ConfirmationRequired(DbrunbookError):
    """A destructive task needs confirmation and there is no TTY to ask on."""

    exit_code = 50
    domain = "safety"


class Aborted(DbrunbookError):
    """The operator answered no."""

    exit_code = 51
    domain = "safety"


# --- backup repository ---------------------------------------------------------------------------


class RepositoryError(DbrunbookError):
    """The backup repository (S3 or filesystem) failed or refused an operation."""

    exit_code = 70
    domain = "repository"


class RepositoryUnreachableError(RepositoryError):
    exit_code = 71


class ObjectMissingError(RepositoryError):
    exit_code = 72


class ObjectCorruptError(RepositoryError):
    """An object's bytes do not match its recorded digest, or fail authentication on decryption."""

    exit_code = 73


class ObjectExistsError(RepositoryError):
    """Append-only: an object with this name exists already with other content."""

    exit_code = 74


class ManifestRefused(RepositoryError):
    """A manifest in the repository is not trusted (unsigned, signed by an unknown key, in the wrong folder,
    listing another folder's objects, from the future). It is never acted on; this reports it."""

    exit_code = 77


class LeaseHeld(RepositoryError):
    """Another dbrunbook run holds a lease on this cluster's repository that this run's work conflicts with."""

    exit_code = 78


class EncryptionError(DbrunbookError):
    exit_code = 75
    domain = "encryption"


class NoMatchingIdentityError(EncryptionError):
    """None of the configured age identities can open this object."""

    exit_code = 76


class BackupError(DbrunbookError):
    exit_code = 80
    domain = "backup"


class VerifyFailed(BackupError):
    """backup.verify read the repository and found missing, damaged or undecryptable objects."""

    exit_code = 81
    domain = "verify"


class WalCheckFailed(BackupError):
    """wal.check found a gap in the archived WAL that a restore would fall into."""

    exit_code = 82
    domain = "wal"


class RestoreError(DbrunbookError):
    exit_code = 85
    domain = "restore"


class RecoveryStoppedEarly(RestoreError):
    """A restore to the end of the archive ended before the newest archived WAL segment: PostgreSQL promoted
    at a segment it could not get, and every later transaction is missing from the copy."""

    exit_code = 86


# --- drills ---------------------------------------------------------------------------------------


class DrillError(DbrunbookError):
    """A drill could not run at all (no backup to try, a bad drill setting)."""

    exit_code = 90
    domain = "drill"


class DrillRestoreFailed(DrillError):
    """The drill's restore or recovery failed: a damaged object, a missing WAL segment or binlog."""

    exit_code = 91


class DrillValidationFailed(DrillError):
    """The restored server came up but a check failed: amcheck, CHECK TABLE or a validation query."""

    exit_code = 92


class DrillTargetMissed(DrillError):
    """Everything restored and validated, but RTO or RPO was above the cluster's target."""

    exit_code = 93


# --- migrations ------------------------------------------------------------------------------------


class MigrationError(DbrunbookError):
    """A schema migration failed; the message says what was left where (the original table never loses data)."""

    exit_code = 100
    domain = "migrate"


class PreflightFailed(MigrationError):
    """A migration refused to start: no usable key, a refused table kind, too little disk, a sick replica, an
    ALTER the server rejects. Nothing was changed."""

    exit_code = 101


class ChecksumMismatch(MigrationError):
    """The shadow table's rows differ from the original's after the recopies allowed, or a rollback window closed."""

    exit_code = 102


class LockTimeout(MigrationError):
    """A lock the migration needs (trigger install, cut-over) was not granted in time; the blocker is named."""

    exit_code = 103


class MigrationBusy(MigrationError):
    """Another migration run holds this table."""

    exit_code = 104


# --- sandbox -------------------------------------------------------------------------------------


class SandboxError(DbrunbookError):
    exit_code = 60
    domain = "sandbox"


class PortBusyError(SandboxError):
    exit_code = 61


def all_error_classes() -> list[type[DbrunbookError]]:
    """Every error class, for the docs table and the uniqueness test."""
    seen: list[type[DbrunbookError]] = []
    stack: list[type[DbrunbookError]] = [DbrunbookError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen
