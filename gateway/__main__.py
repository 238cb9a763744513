"""``python -m gateway`` is the ``coldbrew`` command."""

import sys

from gateway.cli import main

sys.exit(main())
