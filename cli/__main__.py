"""``python -m cli``: the ``runyard`` command line."""

from cli import app

app()
