"""The durable change log: its contract, the SQLite and PostgreSQL backends, and the SQL they share."""
