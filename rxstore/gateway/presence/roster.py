"""Every channel's members, as one node knows them: its own, and those each other node said it has.

Members are kept per node (so that a node that dies takes exactly its own members
away) and per channel (so that a channel's list is one lookup). A connection id is
unique across nodes, so ``(user, conn)`` names a member in a channel whatever its node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rxstore.gateway.presence.diff import Diff
from rxstore.protocol.presence import Member

__all__ = ["Roster"]

Key = tuple[str, str]


class Roster:
    """The members of every channel, by node.

    Example:
        >>> roster = Roster()
        >>> roster.put("n1", "room", Member("ann", "c1", {"away": False}))
        Diff(joins=(Member(user='ann', conn='c1', meta={'away': False}),), updates=(), leaves=())
        >>> [m.user for m in roster.members("room")], roster.count("room")
        (['ann'], 1)
    """

    def __init__(self) -> None:
        self._channels: dict[str, dict[Key, Member]] = {}
        """Channel -> member key -> member: every node's."""
        self._nodes: dict[str, dict[str, dict[Key, Member]]] = {}
        """Node -> channel -> member key -> member."""

    def members(self, channel: str) -> list[Member]:
        """The members of ``channel`` now, every node's."""
        return list(self._channels.get(channel, {}).values())

    def count(self, channel: str) -> int:
        """How many members ``channel`` has."""
        return len(self._channels.get(channel, ()))

    @property
    def channels(self) -> int:
        """How many channels have members."""
        return len(self._channels)

    def size(self, node: str | None = None) -> int:
        """How many memberships ``node`` holds (``None``: every node)."""
        if node is None:
            return sum(len(members) for members in self._channels.values())
        return sum(len(members) for members in self._nodes.get(node, {}).values())

    def nodes(self) -> list[str]:
        """The nodes that hold members."""
        return list(self._nodes)

    def of_node(self, node: str) -> dict[str, list[Member]]:
        """Channel -> the members ``node`` holds there."""
        return {channel: list(members.values()) for channel, members in self._nodes.get(node, {}).items()}

    def put(self, node: str, channel: str, member: Member) -> Diff:
        """Add ``member`` to ``channel`` for ``node``, or replace its metadata; what that changed."""
        own = self._nodes.setdefault(node, {}).setdefault(channel, {})
        members = self._channels.setdefault(channel, {})
        before = members.get(member.key)
        own[member.key] = members[member.key] = member
        if before is None:
            return Diff(joins=(member,))
        return Diff(updates=(member,)) if before.meta != member.meta else Diff()

    def remove(self, node: str, channel: str, key: Key) -> Diff:
        """Take the member ``key`` of ``node`` out of ``channel``; what that changed."""
        own = self._nodes.get(node, {}).get(channel)
        if own is None or key not in own:
            return Diff()
        member = own.pop(key)
        if not own:
            del self._nodes[node][channel]
            if not self._nodes[node]:
                del self._nodes[node]
        members = self._channels[channel]
        del members[key]
        if not members:
            del self._channels[channel]
        return Diff(leaves=(member,))

    def drop_node(self, node: str) -> dict[str, Diff]:
        """Take every member of ``node`` away; channel -> what that changed there."""
        return self.replace_node(node, {})

    def replace_node(self, node: str, channels: Mapping[str, Iterable[Member]]) -> dict[str, Diff]:
        """Make ``channels`` all that ``node`` holds; channel -> what that changed there."""
        before = self._nodes.get(node, {})
        after: dict[str, dict[Key, Member]] = {
            channel: {m.key: m for m in members} for channel, members in channels.items()
        }
        diffs: dict[str, Diff] = {}
        for channel in before.keys() | after.keys():
            diff = self._replace_channel(node, channel, before.get(channel, {}), after.get(channel, {}))
            if diff:
                diffs[channel] = diff
        return diffs

    def _replace_channel(
        self, node: str, channel: str, old: Mapping[Key, Member], new: Mapping[Key, Member]
    ) -> Diff:
        joins: list[Member] = []
        updates: list[Member] = []
        leaves: list[Member] = []
        for key in list(old):
            if key not in new:
                leaves.extend(self.remove(node, channel, key).leaves)
        for member in new.values():
            step = self.put(node, channel, member)
            joins.extend(step.joins)
            updates.extend(step.updates)
        return Diff(tuple(joins), tuple(updates), tuple(leaves))
