"""The process exit codes of every asqsd command, and the one way a config error is reported.

0 clean stop; 1 runtime failure (a component crashed); 2 invalid configuration or usage; 3
start-up failure (queue missing, access key rejected; missing or expired credentials are waited
out); 128+N when a second signal N forced the shutdown (unfinished work is left to SQS).
"""

from __future__ import annotations

import sys

EXIT_OK = 0


EXIT_FAILURE = 1


EXIT_CONFIG = 2


EXIT_STARTUP = 3


def config_error(problems: list[str]) -> int:
    for problem in problems:
        print(f"asqsd: config error: {problem}", file=sys.stderr)
    return EXIT_CONFIG
