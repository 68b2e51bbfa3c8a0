#!/usr/bin/env bash
# A real, single-node Apache Kafka broker (KRaft mode, no ZooKeeper) on loopback, for tests,
# benchmarks and the local demo. The broker comes from Maven Central through mvn, so nothing
# but Java 17 and Maven is needed.
#
#   hack/kafka.sh fetch                 download the pinned Kafka jars into the cache (idempotent)
#   hack/kafka.sh start DIR             format storage in DIR, start a broker, wait until it serves;
#                                       prints KAFKA_BOOTSTRAP=host:port (also written to DIR/env);
#                                       the broker's log is DIR/kafka.log, its GC pauses DIR/gc.log
#                                       (restart moves the last JVM's to gc.log.0)
#       KAFKA_HOST=ADDR                 listen on ADDR instead of 127.0.0.1 (e.g. the local
#                                       cluster's node address, for pods)
#       KAFKA_JMX_PORT=PORT             the broker's JMX metrics on 127.0.0.1:PORT, unauthenticated
#                                       (benchmarks read its request counts there); restart
#                                       serves them only if it is set again
#       KAFKA_STOP_WITH=PID             stop the broker once process PID exits: for callers that
#                                       can be killed before their clean-up runs (a test binary
#                                       on a timeout); restart watches only if it is set again,
#                                       and start leaves a broker already running unwatched
#       KAFKA_SASL_SSL=1                also a SASL_SSL listener (SCRAM-SHA-512 over TLS, with a CA
#                                       made in DIR/tls); adds KAFKA_SASL_SSL_BOOTSTRAP,
#                                       KAFKA_CA_FILE, KAFKA_SCRAM_USERNAME, KAFKA_SCRAM_PASSWORD
#   hack/kafka.sh stop DIR              stop the broker started in DIR (SIGTERM, then SIGKILL)
#   hack/kafka.sh restart DIR           start the stopped broker of DIR again: same data, same port
#   hack/kafka.sh topic DIR NAME PARTS [--config K=V ...]
#                                       create topic NAME with PARTS partitions if it is missing
#   hack/kafka.sh tool DIR CLASS ARGS   run a Kafka tool class (e.g. org.apache.kafka.tools.ProducerPerformance)
source "$(dirname "$0")/lib.sh"

KAFKA_HOME="$FETCH_CACHE_DIR/kafka-${KAFKA_SCALA_VERSION}-${KAFKA_VERSION}"

fetch() {
  [ -f "$KAFKA_HOME/.complete" ] && return 0
  need java mvn
  # Two callers at once (a test run and an image build) would clear each other's download.
  exec {lock}>"$KAFKA_HOME.lock"
  flock "$lock"
  [ -f "$KAFKA_HOME/.complete" ] || download
  # Released now, not at exit: a broker started next (and its watcher) would inherit the lock
  # and hold it, and another caller's fetch would wait for that broker to stop.
  exec {lock}>&-
}

# download: fetch's work, under its lock.
download() {
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

SCRAM_USERNAME=fetch-pipeline

# A CA made for this broker alone, and the broker's key and certificate (for ADDR) signed by it,
# in one PEM file as Kafka's PEM keystore wants. Clients trust DIR/ca.crt.
make_tls() {
  local dir="$1" addr="$2"
  need openssl
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=fetch-pipeline test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kafka" -keyout "$dir/broker.key" -out "$dir/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:%s,IP:127.0.0.1,DNS:localhost\n' "$addr" >"$dir/san.ext"
  openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/san.ext" -out "$dir/broker.crt" 2>/dev/null
  # Kafka's PEM keystore takes an unencrypted PKCS#8 key followed by the certificate chain.
  { openssl pkcs8 -topk8 -nocrypt -in "$dir/broker.key"; cat "$dir/broker.crt"; } >"$dir/broker.pem"
}

start() {
  local dir="${1:?usage: kafka.sh start DIR}"
  check_stop_with
  fetch
  need java python3
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if broker_pid "$dir" >/dev/null; then
    log "a broker is already running from $dir"
    cat "$dir/env"
    return 0
  fi
  rm -rf "$dir/data" "$dir/kafka.log" "$dir"/gc.log*
  local host="${KAFKA_HOST:-127.0.0.1}" port controller_port sasl_port="" format_args=()
  port="$(free_port "$host")"
  controller_port="$(free_port)"
  local listeners="PLAINTEXT://${host}:${port}" advertised="PLAINTEXT://${host}:${port}"
  if [ "${KAFKA_SASL_SSL:-}" = 1 ]; then
    sasl_port="$(free_port "$host")"
    listeners+=",SASL_SSL://${host}:${sasl_port}"
    advertised+=",SASL_SSL://${host}:${sasl_port}"
    make_tls "$dir/tls" "$host"
    SCRAM_PASSWORD="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    # KRaft stores SCRAM credentials in the metadata log; format writes the first user.
    format_args=(--add-scram "SCRAM-SHA-512=[name=${SCRAM_USERNAME},password=${SCRAM_PASSWORD}]")
  fi
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${controller_port}
listeners=${listeners},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=${advertised}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
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
  if [ -n "$sasl_port" ]; then
    cat >>"$dir/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=${dir}/tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=${dir}/tls/ca.crt
PROPS
  fi
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
  jvm_in "$dir"
  local cluster_id
  cluster_id="$("${JVM[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
  "${JVM[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" "${format_args[@]}" >"$dir/format.log" 2>&1 \
    || { cat "$dir/format.log" >&2; die "could not format KRaft storage in $dir"; }
  launch "$dir"
  echo "KAFKA_BOOTSTRAP=${host}:${port}" >"$dir/env"
  if [ -n "$sasl_port" ]; then
    cat >>"$dir/env" <<ENV
KAFKA_SASL_SSL_BOOTSTRAP=${host}:${sasl_port}
KAFKA_CA_FILE=${dir}/tls/ca.crt
KAFKA_SCRAM_USERNAME=${SCRAM_USERNAME}
KAFKA_SCRAM_PASSWORD=${SCRAM_PASSWORD}
ENV
  fi
  log "broker $KAFKA_VERSION serving on ${host}:${port}${sasl_port:+ and SASL_SSL ${host}:${sasl_port}} (pid $(cat "$dir/kafka.pid"), log $dir/kafka.log)"
  cat "$dir/env"
}

# jvm_in DIR: the JVM command line (in JVM) of the broker's storage tool, with DIR's logging
# settings; launch adds the broker's heap. The collector settings are those of Kafka's own
# launcher (kafka-run-class.sh), so that the broker here collects as one started the usual way
# does: its pauses stop every client at once and set the benchmarks' p99 (docs/benchmarks.md
# §8, stop 37).
jvm_in() {
  JVM=(java -Xmx256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$1/log4j2.properties" -cp "$(java_cp)")
}

# stop_with DIR OWNER BROKER: a watcher, in a session of its own like the broker, that stops
# the broker of DIR once process OWNER exits. It leaves alone a broker stopped or restarted
# meanwhile (its pid is no longer BROKER): whoever did that owns it now.
stop_with() {
  setsid bash "$HACK_DIR/kafka.sh" watch "$@" </dev/null >>"$1/stop-with.log" 2>&1 &
}

# watch DIR OWNER BROKER: the watcher's loop (stop_with starts it; not for callers).
watch() {
  local dir="$1" owner="$2" broker="$3"
  # The broker's own pid, not whatever DIR's pid file names by the time the owner is gone.
  ours() { [ "$(broker_pid "$dir" || true)" = "$broker" ]; }
  while alive "$owner" && ours; do sleep 1; done
  if ours; then
    log "process $owner exited: stopping its broker"
    stop_pid "$dir" "$broker"
  fi
}

# Refuses a KAFKA_STOP_WITH that names no running process, before anything is started.
check_stop_with() {
  [ -z "${KAFKA_STOP_WITH:-}" ] && return 0
  [[ "$KAFKA_STOP_WITH" =~ ^[1-9][0-9]*$ ]] && alive "$KAFKA_STOP_WITH" \
    || die "KAFKA_STOP_WITH=$KAFKA_STOP_WITH: give the id of a running process, whose exit is to stop the broker"
}

# launch DIR: runs the broker DIR/server.properties describes and waits until it serves.
launch() {
  local dir="$1" started
  jvm_in "$dir"
  # A fixed heap, as kafka-server-start.sh gives (the later -Xmx wins); the collector's pauses
  # logged, for benchmarks to set beside latencies.
  JVM+=("-Xms${KAFKA_HEAP:-1g}" "-Xmx${KAFKA_HEAP:-1g}" "-Xlog:gc:file=$dir/gc.log:time:filecount=2,filesize=20m")
  # Only the broker's JVM: the storage tool's would take the port first.
  if [ -n "${KAFKA_JMX_PORT:-}" ]; then
    JVM+=(-Dcom.sun.management.jmxremote.port="$KAFKA_JMX_PORT" -Dcom.sun.management.jmxremote.host=127.0.0.1
      -Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false)
  fi
  started="$(grep -c 'Kafka Server started' "$dir/kafka.log" 2>/dev/null || true)"
  # setsid: the broker gets its own session, so Ctrl-C in a terminal reaches the caller's
  # trap (which stops it cleanly) rather than killing the JVM mid-write.
  setsid "${JVM[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
  if [ -n "${KAFKA_STOP_WITH:-}" ]; then
    stop_with "$dir" "$KAFKA_STOP_WITH" "$(cat "$dir/kafka.pid")"
  fi
  if ! wait_for "[ \"\$(grep -c 'Kafka Server started' '$dir/kafka.log')\" -gt ${started:-0} ]" "${KAFKA_START_TIMEOUT:-90}"; then
    tail -n 40 "$dir/kafka.log" >&2
    stop "$dir"
    die "the broker did not start within ${KAFKA_START_TIMEOUT:-90}s (log above, full log in $dir/kafka.log)"
  fi
}

# restart DIR: starts the broker stopped in DIR again, on its data and its port (as a broker
# pod restarted with its volume comes back).
restart() {
  local dir="${1:?usage: kafka.sh restart DIR}"
  check_stop_with
  [ -f "$dir/server.properties" ] && [ -f "$dir/env" ] || die "no broker was started in $dir (run: hack/kafka.sh start $dir)"
  if broker_pid "$dir" >/dev/null; then
    die "the broker in $dir is running: stop it first"
  fi
  fetch
  launch "$dir"
  log "broker restarted from $dir (pid $(cat "$dir/kafka.pid"))"
  cat "$dir/env"
}

# broker_pid DIR: prints the pid of the broker running from DIR. A pid file whose pid has gone
# to another process (the broker was killed, the machine restarted) does not count.
broker_pid() {
  local dir
  dir="$(cd "$1" 2>/dev/null && pwd)" || return 1
  pid_in "$dir/kafka.pid" "kafka.Kafka $dir/server.properties"
}

stop() {
  local dir="${1:?usage: kafka.sh stop DIR}" pid
  if pid="$(broker_pid "$dir")"; then
    stop_pid "$dir" "$pid"
  fi
  rm -f "$dir/kafka.pid"
}

# stop_pid DIR PID: stops the broker PID of DIR (SIGTERM, then SIGKILL after 30 s); its pid
# file goes with it unless it names another broker by then.
stop_pid() {
  local dir="$1" pid="$2"
  kill -TERM "$pid" 2>/dev/null || true
  wait_for "! alive $pid" 30 || kill -KILL "$pid" 2>/dev/null || true
  if [ "$(cat "$dir/kafka.pid" 2>/dev/null)" = "$pid" ]; then rm -f "$dir/kafka.pid"; fi
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
  restart) restart "$@" ;;
  topic) topic "$@" ;;
  tool) tool "$@" ;;
  watch) watch "$@" ;;
  home) echo "$KAFKA_HOME" ;;
  *) sed -n '/^source /q;2,$p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
