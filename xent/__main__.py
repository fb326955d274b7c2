"""``python -m xent``: the same as the ``xent`` command."""

import sys

from .cli import main

sys.exit(main())
