"""`python -m leadsla.cli`, the same as the `leadsla` command."""

from __future__ import annotations

import sys

from leadsla.cli import main

sys.exit(main())
