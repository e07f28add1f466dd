"""``python -m asqsd`` runs the command-line interface."""

import sys

from asqsd.cli import main

sys.exit(main())
