"""``python -m jobbroker.cli``: the ``jobbroker`` command."""

from . import main

main()
