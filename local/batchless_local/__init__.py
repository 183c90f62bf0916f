"""batchless local AWS replica: moto + cargo-lambda + real CodeBuild/ECS processes.

See local/README.md.
"""

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCAL_DIR = os.path.join(REPO_ROOT, "local")
STATE_ROOT = os.path.join(REPO_ROOT, ".local")
DEFAULT_TEMPLATE = os.path.join(REPO_ROOT, "infra", "template.yaml")
REGION = "us-east-1"
ACCOUNT = "123456789012"
