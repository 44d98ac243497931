"""`python -m harness.cli`: the same as the `kharness` command."""

import sys

from . import main

sys.exit(main())
