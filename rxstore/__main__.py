"""``python -m rxstore``: the ``rxstore`` command (``serve``, ``token``, ``demo``, ``log``)."""

import sys

from rxstore.cli import main

if __name__ == "__main__":  # imported (e.g. by pkgutil.walk_packages), it does nothing
    sys.exit(main())
