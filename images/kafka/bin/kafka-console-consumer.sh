#!/usr/bin/env bash
# kafka-console-consumer.sh: runs org.apache.kafka.tools.consumer.ConsoleConsumer (arguments as in the Kafka distribution).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.consumer.ConsoleConsumer "$@"
