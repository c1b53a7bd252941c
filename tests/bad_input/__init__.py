"""Bad-input suite: hypothesis-driven garbage thrown at the client and at the gateway.

``test_client.py`` drives :meth:`Router.on_frame` (``root.router``) in-process; ``test_gateway.py``
throws raw Socket.IO frames at a real gateway on SQLite. Each property counts the
cases it ran (see :mod:`tests.bad_input.cases`); the counts are printed at the end
of the run and written to JSON when ``RXSTORE_BADINPUT_RESULTS`` is set.
"""
