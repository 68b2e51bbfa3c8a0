#!/usr/bin/env bash
# kafka-configs.sh: runs kafka.admin.ConfigCommand (arguments as in the Kafka distribution).
exec "$(dirname "$0")/kafka-run-class.sh" kafka.admin.ConfigCommand "$@"
