"""Presence: who is in which channel, on this node and on the others.

* :mod:`~rxstore.gateway.presence.limits`: the bounds (:class:`PresenceLimits`).
* :mod:`~rxstore.gateway.presence.diff`: what one step changed in a channel (:class:`Diff`).
* :mod:`~rxstore.gateway.presence.roster`: every channel's members, by node (:class:`Roster`).
* :mod:`~rxstore.gateway.presence.rate`: a connection's updates per second (:class:`TokenBucket`).
* :mod:`~rxstore.gateway.presence.relay`: the other nodes, through Redis, under a lease
  (:class:`PresenceRelay`).
* :mod:`~rxstore.gateway.presence.channels`: the clients' joins, updates and leaves
  (:class:`PresenceChannels`), the part the gateway calls.

docs/presence.md describes it; docs/protocol.md, "Presence", specifies its wire.
"""
