"""The test kit: what tests/ and bench/ both need to run the product against real servers.

Server starters (Mosquitto, InfluxDB 1.x and the v2-write proxy in front of it) and the
historian's environment. It sits above the applications and below tests/ and bench/; nothing
in the product imports it, and it imports nothing from tests/.
"""
