import sys

from citytelemetry.cli import main

sys.exit(main())
