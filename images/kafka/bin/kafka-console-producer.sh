#!/usr/bin/env bash
# kafka-console-producer.sh: runs org.apache.kafka.tools.ConsoleProducer (arguments as in the Kafka distribution).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.ConsoleProducer "$@"
