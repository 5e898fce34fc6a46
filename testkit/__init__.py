"""The test kit: what tests/ and bench/ both need to run the product against real servers.

Server starters (`servers.py`: Mosquitto with test accounts, on the demo's starter in
apps/servers.py; InfluxDB 1.x and the v2-write proxy in front of it), the historian as a process
and its environment (`historian.py`), and the loss accounting behind "0 lost, 0 duplicates"
(`loss.py`). Every process is started by the one launcher, apps/launcher.py. It sits above the
applications and below tests/ and bench/; nothing in the product imports it, and it imports
nothing from tests/.
"""
