"""Repository entry point for ``invoke``: the same task tree as the ``dbrunbook`` console script."""

from dbrunbook.tasks import namespace

ns = namespace
