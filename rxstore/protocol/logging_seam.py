"""The one place rxstore reads a private name of the standard library's :mod:`logging`.

The client's DEBUG lines are guarded once per frame (the router's, each store's).
``Logger.isEnabledFor`` is a Python call: about 745 instructions under callgrind
(CPython 3.11), two of them about 4 % of a one-change frame. A lookup in the
dict it answers from costs about 340, with the same answer:
``cache.get(DEBUG) is not False and log.isEnabledFor(DEBUG)``. Written against
CPython 3.11 to 3.13 (``Logger._cache``, there since 3.7);
``tests/protocol/test_logging_seam.py`` fails when it changes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

__all__ = ["level_cache"]


def level_cache(logger: logging.Logger) -> Mapping[int, bool]:
    """The cache of ``logger.isEnabledFor``'s answers by level: read it, never write it.

    Every level change (``setLevel``, ``logging.disable``, ``dictConfig``) empties
    it, the same dict object, and ``isEnabledFor`` fills it again. Only ``False``
    in it is an answer: a missing level must be asked of ``isEnabledFor``, and so
    must ``True`` (``isEnabledFor`` also says no for a ``disabled`` logger).
    Where ``logging`` has no such cache, an empty mapping: every check asks.
    """
    cache = getattr(logger, "_cache", None)  # CPython 3.7-3.13: Logger._cache, cleared in place
    return cache if type(cache) is dict else {}
