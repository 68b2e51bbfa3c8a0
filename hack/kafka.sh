#!/usr/bin/env bash
# A real, single-node Apache Kafka broker (KRaft mode, no ZooKeeper) on loopback, for tests,
# benchmarks and the local demo. The broker comes from Maven Central through mvn, so nothing
# but Java 17 and Maven is needed.
#
#   hack/kafka.sh fetch                 download the pinned Kafka jars into the cache (idempotent)
#   hack/kafka.sh start DIR             format storage in DIR, start a broker, wait until it serves;
#                                       prints KAFKA_BOOTSTRAP=host:port (also written to DIR/env)
#   hack/kafka.sh stop DIR              stop the broker started in DIR (SIGTERM, then SIGKILL)
#   hack/kafka.sh topic DIR NAME PARTS [--config K=V ...]
#                                       create topic NAME with PARTS partitions if it is missing
#   hack/kafka.sh tool DIR CLASS ARGS   run a Kafka tool class (e.g. org.apache.kafka.tools.ProducerPerformance)
source "$(dirname "$0")/lib.sh"

KAFKA_HOME="$FETCH_CACHE_DIR/kafka-${KAFKA_SCALA_VERSION}-${KAFKA_VERSION}"

fetch() {
  [ -f "$KAFKA_HOME/.complete" ] && return 0
  need java mvn
  log "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME"
  rm -rf "$KAFKA_HOME" && mkdir -p "$KAFKA_HOME"
  # A throwaway pom whose only job is to let mvn resolve the broker and its tools with all
  # their runtime dependencies; copy-dependencies then lays them out as one classpath.
  cat >"$KAFKA_HOME/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fetch-pipeline.hack</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_${KAFKA_SCALA_VERSION}</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
  (cd "$KAFKA_HOME" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=libs) \
    || die "mvn could not resolve Kafka $KAFKA_VERSION"
  touch "$KAFKA_HOME/.complete"
  log "Kafka $KAFKA_VERSION ready ($(ls "$KAFKA_HOME/libs" | wc -l) jars)"
}

java_cp() { echo "$KAFKA_HOME/libs/*"; }

start() {
  local dir="${1:?usage: kafka.sh start DIR}"
  fetch
  need java python3
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ -f "$dir/kafka.pid" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
    log "a broker is already running from $dir"
    cat "$dir/env"
    return 0
  fi
  rm -rf "$dir/data" "$dir/kafka.log"
  local port controller_port
  port="$(free_port)"
  controller_port="$(free_port)"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${controller_port}
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${dir}/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  cat >"$dir/log4j2.properties" <<'LOG'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
LOG
  local jvm=(java -Xms256m -Xmx${KAFKA_HEAP:-1g} -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$(java_cp)")
  local cluster_id
  cluster_id="$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
  "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
    || { cat "$dir/format.log" >&2; die "could not format KRaft storage in $dir"; }
  # setsid: the broker gets its own session, so Ctrl-C in a terminal reaches the caller's
  # trap (which stops it cleanly) rather than killing the JVM mid-write.
  setsid "${jvm[@]}" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
  if ! wait_for "grep -q 'Kafka Server started' '$dir/kafka.log'" "${KAFKA_START_TIMEOUT:-90}"; then
    tail -n 40 "$dir/kafka.log" >&2
    stop "$dir"
    die "the broker did not start within ${KAFKA_START_TIMEOUT:-90}s (log above, full log in $dir/kafka.log)"
  fi
  echo "KAFKA_BOOTSTRAP=127.0.0.1:${port}" >"$dir/env"
  log "broker $KAFKA_VERSION serving on 127.0.0.1:${port} (pid $(cat "$dir/kafka.pid"), log $dir/kafka.log)"
  cat "$dir/env"
}

stop() {
  local dir="${1:?usage: kafka.sh stop DIR}"
  [ -f "$dir/kafka.pid" ] || return 0
  local pid
  pid="$(cat "$dir/kafka.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait_for "! kill -0 $pid" 30 || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/kafka.pid"
}

bootstrap_of() {
  local dir="$1"
  [ -f "$dir/env" ] || die "no broker has been started in $dir (run: hack/kafka.sh start $dir)"
  sed -n 's/^KAFKA_BOOTSTRAP=//p' "$dir/env"
}

topic() {
  local dir="${1:?usage: kafka.sh topic DIR NAME PARTITIONS}" name="${2:?topic name}" parts="${3:?partitions}"
  shift 3
  tool "$dir" org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap_of "$dir")" \
    --create --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1 "$@"
}

tool() {
  local dir="${1:?usage: kafka.sh tool DIR CLASS ARGS...}" class="${2:?tool class}"
  shift 2
  fetch
  java -Xmx512m "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$(java_cp)" "$class" "$@"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  fetch) fetch ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  topic) topic "$@" ;;
  tool) tool "$@" ;;
  home) echo "$KAFKA_HOME" ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
