"""``python -m pycnnrnn``: see pycnnrnn/cli.py (subcommands) and pycnnrnn/demo.py (the demo)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
