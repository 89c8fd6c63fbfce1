import sys

from galley.run.main import main

sys.exit(main())
