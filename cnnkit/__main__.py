"""``python -m cnnkit`` (and ``torchrun -m cnnkit train ...``)."""
import sys

from cnnkit.cli import main

sys.exit(main())
