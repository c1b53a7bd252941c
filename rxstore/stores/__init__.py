"""Stores: folds of the root's event stream into observable state.

* :mod:`~rxstore.stores.domain`: :class:`DomainStore` (filter + scan into a ``BehaviorSubject``);
* :mod:`~rxstore.stores.table`: :class:`TableStore`, one table mirrored from change envelopes;
* :mod:`~rxstore.stores.state`: :class:`TableState`, the rows at a log position;
* :mod:`~rxstore.stores.derived`: :func:`derived`, a value computed from several stores, once per change;
* :mod:`~rxstore.stores.folding`: how a table's frames fold into its state;
* :mod:`~rxstore.stores.window`: a window's rows in order;
* :mod:`~rxstore.stores.optimistic`: rows shown until their mutation settles;
* :mod:`~rxstore.stores.status`: a store's sync status;
* :mod:`~rxstore.stores.presence`: :class:`PresenceStore`, a presence channel's members and deltas;
* :mod:`~rxstore.stores.live`: waiting until stores are live.

Stores stand on :mod:`rxstore.operators` and :mod:`rxstore.protocol`, never on the client.
"""
