"""The ``dbrunbook`` console script: the same task tree as ``invoke`` in the repository, usable from any
ops repository after ``pip install dbrunbook`` (config files ``dbrunbook.yaml``, env prefix ``DBRUNBOOK_``)."""

from __future__ import annotations

from invoke.config import Config
from invoke.program import Program

from dbrunbook import __version__
from dbrunbook.tasks import namespace


class DbrunbookConfig(Config):
    prefix = "dbrunbook"


program = Program(
    namespace=namespace,
    version=__version__,
    name="dbrunbook",
    binary="dbrunbook",
    binary_names=["dbrunbook"],
    config_class=DbrunbookConfig,
)


def main() -> None:
    program.run()
