"""rxstore's benchmark suite: ``python -m benchmarks [--quick] [--json PATH]``.

Every benchmark measures rxstore and its peers (plain callbacks, raw reactivex,
a bare python-socketio client, reaktiv signals, a pydux store) in the same run,
on the same machine, doing the same work, and reports rows of
``(name, variant, value, unit)``. Benchmarks report; nothing here asserts a
timing. See ``docs/benchmarks.md``.
"""
