#!/usr/bin/env python3
"""AnimeBack command line: `python run.py --help`."""

import sys

from animeback.cli import main

if __name__ == "__main__":
    sys.exit(main())
