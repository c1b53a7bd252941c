"""Who may talk to the gateway: tokens, sessions, and the wire's guard against hostile input."""
