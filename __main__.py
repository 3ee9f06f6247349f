"""``python -m hlopsim``: the command line."""
import sys

from hlopsim.protocols.cli import main

sys.exit(main())
