"""The SQLite change log: schema and capture triggers, reads, retention."""
