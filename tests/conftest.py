"""Shared fixtures. Integration fixtures that start real servers live in tests/integration."""

# Real servers (Mosquitto, InfluxDB 1.x) on free loopback ports: testkit/servers.py.
pytest_plugins = ["testkit.servers"]
