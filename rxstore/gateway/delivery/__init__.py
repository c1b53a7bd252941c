"""Getting changes to clients: the tailer, send queues, the direct wire, sync, catch-up, fan-out."""
