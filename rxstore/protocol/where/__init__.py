"""The parts of a where clause: terms, groups, claims and relations (subqueries).

* :mod:`~rxstore.protocol.where.terms`: ``column op value``, evaluated with SQL's semantics;
* :mod:`~rxstore.protocol.where.groups`: ``and`` / ``or`` / ``not`` with three-valued logic;
* :mod:`~rxstore.protocol.where.claims`: a claim of the connection's token as a value;
* :mod:`~rxstore.protocol.where.relations`: an ``in`` term's values taken from another table.

:mod:`rxstore.protocol.subsets` reads them from the wire and puts them together.
"""
