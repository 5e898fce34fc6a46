"""Grafana for the plant: dashboards generated from the tag registry, provisioning, push.

`python -m dashboards.generate` writes `dashboards/json/*.json` (committed; a unit test checks
that regenerating gives the same files). `provisioning/` is what Grafana reads at start-up in
docker-compose; `plant grafana push` loads the same dashboards into an existing Grafana.
"""
