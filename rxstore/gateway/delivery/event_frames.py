"""Batch frames assembled from events encoded once: one broadcast, many clients, each its own mix.

In a broadcast to live-query clients, an event (``[id, envelope]``) is often
handed to many clients, each in a different mix of events: one frame per
client, but not one encoding of each event per client. :class:`EventFrames`
encodes each event once (orjson, as :class:`~rxstore.gateway.codec.GatewayJSON`
would inside the frame) and builds a client's ``rxstore:batch`` packet text by
joining the encoded events. The frames are byte for byte those of
:meth:`Delivery.batch_frames <rxstore.gateway.delivery.queues.Delivery.batch_frames>`,
cut at the same places: the JSON of a list is its items' JSON joined by ``,``
(orjson writes no spaces). Where that does not hold (the msgpack serializer,
no orjson, an event orjson does not encode as the frame would: an exact row,
an integer beyond 64 bits), the frame is made by ``batch_frames`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import engineio
import socketio

from rxstore.gateway.codec import LogFrame
from rxstore.gateway.delivery.gateway_packets import GatewayPacket
from rxstore.gateway.delivery.queues import OutFrame
from rxstore.protocol.events import BATCH
from rxstore.protocol.json_fast import orjson as _orjson

__all__ = ["EventFrames", "joins"]

_MESSAGE = engineio.packet.MESSAGE


def joins(packet_class: type[Any]) -> bool:
    """Whether frames of this packet class may be joined from their events' JSON."""
    return _orjson is not None and issubclass(packet_class, GatewayPacket)


def _head_tail(packet_class: type[Any]) -> tuple[str, str]:
    """The packet text around the events of a batch frame: ``2["rxstore:batch",{"events":[`` and ``]}]``."""
    text = packet_class(socketio.packet.EVENT, namespace="/", data=[BATCH, LogFrame(events=[])]).encode()
    assert isinstance(text, str) and text.endswith("[]}]"), text
    return text[:-3], text[-3:]


class EventFrames:
    """One broadcast's batch frames, each event encoded once for every client it goes to.

    Args:
        packet_class: The server's packet class (see :func:`joins`).
        frame_bytes: Target size of a frame, as the delivery's.
        batch_frames: The delivery's, for the frames that cannot be joined.

    Call :meth:`forget` when the broadcast is over: events are known by their ids.
    """

    def __init__(
        self,
        packet_class: type[Any],
        frame_bytes: int,
        batch_frames: Callable[[list[Any]], list[OutFrame]],
    ) -> None:
        self.head, self.tail = _head_tail(packet_class)
        self.frame_bytes = frame_bytes
        self.batch_frames = batch_frames
        self.texts: dict[int, str | None] = {}
        """Each event's JSON by its id (the events live until the broadcast is over)."""

    def forget(self) -> None:
        """Forget the events encoded so far (the broadcast is over)."""
        self.texts.clear()

    def text(self, event: list[Any]) -> str | None:
        """The event's JSON, encoded on first use; ``None`` when orjson would not write the frame's."""
        key = id(event)
        texts = self.texts
        if key in texts:
            return texts[key]
        try:
            text: str | None = str(_orjson.dumps(event, option=_orjson.OPT_PASSTHROUGH_SUBCLASS), "utf-8")
        except (_orjson.JSONEncodeError, TypeError):
            text = None
        texts[key] = text
        return text

    def frames(self, events: list[Any]) -> list[OutFrame]:
        """``events`` as batch frames, those of ``batch_frames`` byte for byte."""
        if not events:
            return []
        texts = []
        for event in events:
            text = self.text(event)
            if text is None:
                return self.batch_frames(events)
            texts.append(text)
        return self._cut(events, texts, 0, len(events))

    def _cut(self, events: list[Any], texts: list[str], start: int, stop: int) -> list[OutFrame]:
        """The frames of ``events[start:stop]``, cut as ``Delivery.batch_frames`` cuts them."""
        count = stop - start
        size = len(self.head) + len(self.tail) + sum(map(len, texts[start:stop])) + count - 1
        if size <= self.frame_bytes or count == 1:
            packet = self.head + ",".join(texts[start:stop]) + self.tail
            frame = OutFrame(BATCH, None, count, last=events[stop - 1][1]["seq"])
            frame.packets = [engineio.packet.Packet(_MESSAGE, packet)]
            frame.nbytes = size
            return [frame]
        parts = min(count, -(-size // self.frame_bytes))
        step = -(-count // parts)
        frames: list[OutFrame] = []
        for first in range(start, stop, step):
            frames.extend(self._cut(events, texts, first, min(first + step, stop)))
        return frames
