"""``python -m adapters.redis``: the same as ``hybrid worker``."""

import sys

from adapters.redis import worker_command

sys.exit(worker_command(sys.argv[1:]))
