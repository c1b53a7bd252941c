"""How a table's frames fold into its state: the table store's fold, apart from the store.

* :mod:`~rxstore.stores.folding.fold_spec`: :class:`TableFold`, what folding a table needs to know;
* :mod:`~rxstore.stores.folding.fold`: changes, snapshots and resets folded in one map mutation;
* :mod:`~rxstore.stores.folding.foreign`: the payloads of a server other than the gateway.
"""
