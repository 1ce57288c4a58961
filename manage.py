#!/usr/bin/env python
import os
import sys

# Commands that talk to Redis themselves: `shell` (queueing a task, announcing a batch by hand). The
# others need no Redis (migrate, check, createsuperuser, Fluxo's own commands) and start none.
NEEDS_REDIS = {"shell"}


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")
    if sys.argv[1:2] and sys.argv[1] in NEEDS_REDIS:
        from fluxo import embedded_redis

        embedded_redis.start_for_process()  # finds or starts the embedded Redis; SystemExit if refused
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
