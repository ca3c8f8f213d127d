"""The ``dbrunbook`` console script: the same task tree as ``invoke`` in the repository, usable from any
ops repository after ``pip install dbrunbook`` (config files ``dbrunbook.yaml``, env prefix ``DBRUNBOOK_``)."""

from __future__ import annotations

from invoke.config import Config
from invoke.exceptions import Exit
from invoke.parser.argument import Argument
from invoke.program import Program

from dbrunbook import __version__
from dbrunbook.errors import UsageError
from dbrunbook.tasks import namespace
from dbrunbook.tasks.conventions import REFUSED_CORE_FLAGS, set_program_name


class DbrunbookConfig(Config):
    prefix = "dbrunbook"


class DbrunbookProgram(Program):
    """Invoke's Program, minus the core flags that would not do what they say (see tasks/conventions.py).

    They stay parseable so that they can be refused with a reason, wherever they appear: ``dbrunbook -R
    backup.prune --yes`` and ``dbrunbook backup.prune -R --yes`` both stop before anything runs.
    """

    def core_args(self) -> list[Argument]:
        args: list[Argument] = super().core_args()
        for arg in args:
            if arg.name in REFUSED_CORE_FLAGS:
                arg.help = "refused by dbrunbook (see the tasks' own flags: dbrunbook TASK --help)"
        return args

    def run(self, argv: list[str] | None = None, exit: bool = True) -> None:
        set_program_name(self.binary or "dbrunbook")
        super().run(argv, exit)

    def parse_core(self, argv: list[str] | None) -> None:
        super().parse_core(argv)
        # Before the task name is parsed: `dbrunbook -e prod backup.full` would otherwise end in
        # "No idea what 'prod' is!", which does not say that -e there meant --echo.
        self._refuse_core_flags()

    def parse_cleanup(self) -> None:
        self._refuse_core_flags()  # core flags given after a task name land here
        super().parse_cleanup()

    def _refuse_core_flags(self) -> None:
        for flag, why in REFUSED_CORE_FLAGS.items():
            if self.args[flag].value:
                raise Exit(
                    f"dbrunbook: {UsageError.domain} error: {why.format(program=self.binary or 'dbrunbook')}",
                    code=UsageError.exit_code,
                )


program = DbrunbookProgram(
    namespace=namespace,
    version=__version__,
    name="dbrunbook",
    binary="dbrunbook",
    binary_names=["dbrunbook"],
    config_class=DbrunbookConfig,
)


def main() -> None:
    program.run()
