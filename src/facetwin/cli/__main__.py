"""`python -m facetwin.cli`."""

import sys

from . import main

sys.exit(main())
