"""Type-checks dashboards/json against Grafana's own schema (npm @grafana/schema) with tsc.

`npm ci --prefix dashboards/schema_check` once, then `python -m dashboards.schema_check`.
See emit.py.
"""
