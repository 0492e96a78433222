"""Misbehaving role processes for supervisor tests: `stubborn` ignores SIGTERM, `crashing`
exits with status 1 at once. Usage: python serve_test_role.py NAME"""

import signal
import sys
import time

LIFETIME = 120.0  # bounded: never outlives a test run


def main() -> int:
    name = sys.argv[1]
    if name == "crashing":
        return 1
    if name == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stubborn role ignoring SIGTERM", file=sys.stderr, flush=True)
        end = time.monotonic() + LIFETIME
        while time.monotonic() < end:  # idle until SIGKILL (or the bounded lifetime ends)
            time.sleep(0.5)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
