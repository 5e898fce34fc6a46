"""Shared fixtures. Integration fixtures that start real servers live in tests/integration."""

# Real servers (Mosquitto, InfluxDB 1.x) on free loopback ports: tests/support/servers.py.
pytest_plugins = ["tests.support.servers"]
