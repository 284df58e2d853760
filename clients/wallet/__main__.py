"""``python -m tsunagu.wallet …`` = ``tsunagu wallet …``."""

import sys

from tsunagu.wallet.cli import main

sys.exit(main(prog="python -m tsunagu.wallet"))
