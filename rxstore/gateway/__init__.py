"""The server half of rxstore: change capture, the Socket.IO gateway, the CLI's server."""
