"""`python -m memsys ...`: the command line over the same engine."""
import sys

from memsys.cli.main import main

sys.exit(main())
