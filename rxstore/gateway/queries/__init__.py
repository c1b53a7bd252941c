"""Live queries and authorization: subscriptions, their index, and who sees which row."""
