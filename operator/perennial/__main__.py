import sys

from perennial.cli import main

sys.exit(main())
