"""``python -m lrf_optuna.cli``."""

import sys

from lrf_optuna.cli import main

sys.exit(main())
