import sys

from citytelemetry.cli.main import main

sys.exit(main())
