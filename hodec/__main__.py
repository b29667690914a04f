"""`python -m hodec` (and `torchrun ... -m hodec fit ...`, which runs a module): the command line."""
import sys

from .cli import main

sys.exit(main())
