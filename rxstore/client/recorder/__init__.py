"""Recording a root's session, saving it, and stepping through it (docs/devtools.md).

``root.record()`` returns a :class:`Recorder` (a context manager) that keeps every
frame the root receives and every state its stores publish, within
:class:`RecordLimits`; its :class:`Recording` saves to a JSON lines file, loads back,
steps through a store's states (:meth:`Recording.timeline`, a :class:`Timeline`), and
turns into a regression test (``rxstore replay FILE``, :class:`rxstore.testing.Replay`).
"""

from rxstore.client.recorder.frame_entry import FrameEntry
from rxstore.client.recorder.limits import RecordLimits
from rxstore.client.recorder.link_entry import LinkEntry
from rxstore.client.recorder.plain import difference, plain, unreplayable
from rxstore.client.recorder.recorder import Recorder
from rxstore.client.recorder.recording import FORMAT_VERSION, Recording
from rxstore.client.recorder.state_entry import StateEntry
from rxstore.client.recorder.store_entry import StoreEntry
from rxstore.client.recorder.timeline import Timeline

__all__ = [
    "FORMAT_VERSION",
    "FrameEntry",
    "LinkEntry",
    "RecordLimits",
    "Recorder",
    "Recording",
    "StateEntry",
    "StoreEntry",
    "Timeline",
    "difference",
    "plain",
    "unreplayable",
]
