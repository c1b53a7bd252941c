"""The client's connection: one root store, its socket, and what flows through it.

Data flows down: :mod:`~rxstore.client.transport` (the socket) ->
:mod:`~rxstore.client.router` (frames -> events, keyed views) -> the stores;
:mod:`~rxstore.client.root` owns them all, with the connection loop
(:mod:`~rxstore.client.connector`, :mod:`~rxstore.client.connection`), the
subscriptions (:mod:`~rxstore.client.subscriptions`), the presence channels joined
(:mod:`~rxstore.client.presence`), the outbox (:mod:`~rxstore.client.outbox`) and the
metrics (:mod:`~rxstore.client.metrics`).
"""
