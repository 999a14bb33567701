"""`python -m dynomesh`: the same dispatcher as the installed `dynomesh` command."""

import sys

from dynomesh.cli import main

sys.exit(main())
