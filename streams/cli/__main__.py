"""`python -m streams.cli ...`: the `rewards` console script without its launcher."""

from __future__ import annotations

import sys

from streams.cli.main import main

sys.exit(main())
