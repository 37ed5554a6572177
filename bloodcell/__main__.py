import sys

from bloodcell.cli import main

sys.exit(main())
