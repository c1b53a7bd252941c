"""Tests of the ``rxstore`` command line (``rxstore.cli``), run as a user runs it: real processes."""
