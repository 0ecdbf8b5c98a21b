import sys

from corequeue.cli import main

sys.exit(main())
