#!/usr/bin/env python3
"""batchless local AWS replica. See local/README.md.

    python local/replica.py up --name NAME [--time-scale X] [--template infra/template.yaml] [--env staging]
    python local/replica.py down --name NAME
    python local/replica.py status [--name NAME]
    python local/replica.py serve --name NAME ...
    python local/replica.py plan [--template ...]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from batchless_local.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
