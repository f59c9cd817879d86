"""`python -m bitnet` is the `bitnet` command."""
import sys

from bitnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
