"""Developers' tools that watch a running system: ``rxstore inspect`` and ``rxstore top``.

* :mod:`~rxstore.devtools.inspect_app`: a Textual app following a gateway as a client does
  (a :class:`~rxstore.devtools.follower.Follower`: a real ``RootStore``, a table store per
  :class:`~rxstore.devtools.table_spec.TableSpec`, the last frames in a
  :class:`~rxstore.devtools.frame_log.FrameLog`).
* :mod:`~rxstore.devtools.top_app`: a Textual app reading the ``/healthz`` and ``/metrics``
  of gateway nodes (:class:`~rxstore.devtools.node_reader.NodeReader`, one
  :class:`~rxstore.devtools.node_sample.NodeSample` per read).
* :mod:`~rxstore.devtools.command`: what the two commands run.

The apps need Textual (``pip install "rxstore[devtools]"``); the rest of the package does not,
and importing it imports no Textual.
"""
