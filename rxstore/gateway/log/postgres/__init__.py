"""The PostgreSQL change log: schema, sequencer, WAL capture and decoding, reads, retention."""
