#!/bin/sh
# frost's loader on the port given last (the benchmark's calling convention);
# FROST_WORKERS picks the process model (default: the bundle's, a master and 1 worker).
exec "$1" --listen "127.0.0.1:$2" --no-access-log ${FROST_WORKERS:+--workers "$FROST_WORKERS"}
