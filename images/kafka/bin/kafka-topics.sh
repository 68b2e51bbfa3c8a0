#!/usr/bin/env bash
# kafka-topics.sh: runs org.apache.kafka.tools.TopicCommand (arguments as in the Kafka distribution).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.TopicCommand "$@"
