"""``python -m codecstream``: the same as the ``codecstream`` command."""

import sys

from .commands.cli import main

if __name__ == "__main__":
    sys.exit(main())
