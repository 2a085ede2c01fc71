#!/bin/sh
# frost's loader on the port given last (the benchmark's calling convention); FROST_WORKERS
# picks the process model: 1 (the default here) is a master and one worker, 0 one process.
exec "$1" --listen "127.0.0.1:$2" --no-access-log --workers "${FROST_WORKERS:-1}"
