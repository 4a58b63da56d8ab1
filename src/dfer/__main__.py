"""``python -m dfer`` (also what ``torchrun -m dfer`` runs)."""

import sys

from dfer.cli import main

sys.exit(main())
