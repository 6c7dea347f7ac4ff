import sys

from trainatlas.cli import main

sys.exit(main())
