"""The HTTP surfaces: the data-plane proxy, the admin API, the fleet usage exchange, the server."""
