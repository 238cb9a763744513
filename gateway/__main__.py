"""``python -m gateway`` is the ``coldbrew`` command."""

import sys

from gateway.cli.main import main

sys.exit(main())
