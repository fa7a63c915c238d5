"""`python -m app.cli` runs the `crackscan` command."""

import sys

from app.cli import main

sys.exit(main())
