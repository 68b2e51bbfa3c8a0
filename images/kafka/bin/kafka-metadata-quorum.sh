#!/usr/bin/env bash
# kafka-metadata-quorum.sh: runs org.apache.kafka.tools.MetadataQuorumCommand (arguments as in the Kafka distribution).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.MetadataQuorumCommand "$@"
