import sys

from perennial_runtime.cli import main

sys.exit(main())
