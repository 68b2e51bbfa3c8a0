#!/usr/bin/env bash
# kafka-storage.sh: runs kafka.tools.StorageTool (arguments as in the Kafka distribution).
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
