"""`python -m bitnet.server --model M.gguf`: the same server as `bitnet serve`."""
import sys

from bitnet.server.main import main

sys.exit(main())
