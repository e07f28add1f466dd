"""``python -m asqsd`` runs the command-line interface."""

import sys

from asqsd.cli.main import main

sys.exit(main())
