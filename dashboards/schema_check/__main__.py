"""`python -m dashboards.schema_check`: see dashboards/schema_check/emit.py."""

import sys

from dashboards.schema_check.emit import main

sys.exit(main())
