import sys

from clearapi.cli import main

sys.exit(main())
