import sys

from portside.components.serve.cli import main

sys.exit(main())
