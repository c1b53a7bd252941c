"""Rows that arrive in more than one frame: the router's collaborators for snapshots and pages.

* :mod:`~rxstore.client.snapshots.chunks`: snapshots in chunks (``"more": true``), held until the last;
* :mod:`~rxstore.client.snapshots.pages`: ``rxstore:page`` frames, the rows ``store.more(n)`` adds.
"""
