"""``python -m textseg`` is the same as the ``textseg`` command (and what ``accelerate launch -m`` runs)."""

import sys

from textseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
