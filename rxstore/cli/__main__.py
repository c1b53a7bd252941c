"""``python -m rxstore.cli``: the ``rxstore`` command."""

import sys

from rxstore.cli import main

sys.exit(main())
