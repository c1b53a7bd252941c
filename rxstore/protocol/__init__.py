"""What the client and the gateway share, and nothing else: the floor both halves stand on.

* :mod:`~rxstore.protocol.events`: event names, change envelopes, :class:`Event` and :class:`Change`;
* :mod:`~rxstore.protocol.frames`: decoding the gateway's frames (msgspec, one C pass per batch);
* :mod:`~rxstore.protocol.subsets`: live-query subsets (where clauses, columns) and their rules,
  over :mod:`~rxstore.protocol.where.terms` (``column op value``), :mod:`~rxstore.protocol.where.groups`
  (``and`` / ``or`` / ``not``), :mod:`~rxstore.protocol.where.claims` (a token's claim as a value) and
  :mod:`~rxstore.protocol.where.relations` (a subquery on another table); windows in
  :mod:`~rxstore.protocol.windows` (``order_by``, ``limit``, ``after``) and their paging in
  :mod:`~rxstore.protocol.paging` (``rxstore:more``);
* :mod:`~rxstore.protocol.presence`: presence events, a :class:`~rxstore.protocol.presence.Member`,
  the checks of a channel and its metadata;
* :mod:`~rxstore.protocol.records`: rows structured into typed records;
* :mod:`~rxstore.protocol.errors`: the one exception hierarchy;
* :mod:`~rxstore.protocol.json_fast`: the JSON fast paths.

It imports nothing else of rxstore (import-linter checks it).
"""
