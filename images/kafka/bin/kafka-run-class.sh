#!/usr/bin/env bash
# Runs a Java main class of Kafka with the jars in /opt/kafka/libs on the classpath, as the
# distribution's script does:  kafka-run-class.sh [-daemon] [-name NAME] CLASS [ARGS...]
# Honoured: KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_GC_LOG_OPTS, KAFKA_JMX_OPTS,
# KAFKA_LOG4J_OPTS, KAFKA_OPTS, JAVA_HOME, LOG_DIR. (-daemon and -name are accepted and ignored:
# a container keeps its process in the foreground.)
set -euo pipefail
base_dir="$(cd "$(dirname "$0")/.." && pwd)"
while [ $# -gt 0 ]; do
  case "$1" in
    -daemon) shift ;;
    -name) shift 2 ;;
    -loggc) shift ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [-daemon] [-name NAME] CLASS [ARGS...]" >&2; exit 1; }
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
LOG_DIR="${LOG_DIR:-$base_dir/logs}"
if [ -z "${KAFKA_LOG4J_OPTS:-}" ]; then
  KAFKA_LOG4J_OPTS="-Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.properties"
fi
# Word splitting of the *_OPTS variables is intended: each holds several JVM flags.
# shellcheck disable=SC2086
exec "$java" ${KAFKA_HEAP_OPTS:--Xmx256M} \
  ${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true} \
  ${KAFKA_GC_LOG_OPTS:-} ${KAFKA_JMX_OPTS:-} "-Dkafka.logs.dir=$LOG_DIR" $KAFKA_LOG4J_OPTS \
  -cp "$base_dir/libs/*${CLASSPATH:+:$CLASSPATH}" ${KAFKA_OPTS:-} "$@"
