#!/bin/sh
# frost's loader on the port given last (the benchmark's calling convention).
exec "$1" --listen "127.0.0.1:$2" --no-access-log
