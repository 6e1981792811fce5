"""``python -m adwd``: the same command line as the ``adwd`` script."""

import sys

from adwd.service.cli import main

sys.exit(main())
