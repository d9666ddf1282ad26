"""``python -m kres.cli``: the ``kres`` command."""

import sys

from kres.cli.parser import main

sys.exit(main())
