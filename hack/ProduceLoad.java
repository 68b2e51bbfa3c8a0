// The Java client's side of hack/bench-requests.sh: sends the lines of a file to a topic at a
// fixed rate (round and round the file), each keyed by a random UUID as the generator keys its
// events, with the settings the consumer gives librdkafka where the Java client has them:
// idempotent, acks=all, lz4, the linger. Two differ in meaning. librdkafka's 16 MiB queue
// counts the records' bytes, and its batch.size (1,000,000 bytes) only caps a batch; the Java
// client sets a whole batch.size aside from buffer.memory for each open batch, so here a batch
// may hold 256 KiB (more than any batch of these runs reaches) and the records 128 MiB, and a
// send never waits for memory (the run prints the time it did). Unlike librdkafka, the Java
// client puts every partition a broker leads in one produce request, and that is what the
// benchmark compares.
//
//   java -cp "$KAFKA_HOME/libs/*" hack/ProduceLoad.java BOOTSTRAP TOPIC FILE RATE COUNT LINGER_MS
//
// Prints the events/s it kept up and the client's own request counts.

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.locks.LockSupport;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class ProduceLoad {
  /** Events sent between two looks at the clock. */
  private static final int PACE_EVERY = 200;

  public static void main(String[] args) throws Exception {
    if (args.length != 6) {
      System.err.println("usage: ProduceLoad BOOTSTRAP TOPIC FILE RATE COUNT LINGER_MS");
      System.exit(2);
    }
    String topic = args[1];
    List<String> lines = Files.readAllLines(Path.of(args[2]));
    long rate = Long.parseLong(args[3]);
    long count = Long.parseLong(args[4]);
    if (lines.isEmpty() || rate <= 0 || count <= 0) {
      System.err.println("need a non-empty file, a rate and a count above 0");
      System.exit(2);
    }
    Properties settings = new Properties();
    settings.put("bootstrap.servers", args[0]);
    settings.put("enable.idempotence", "true");
    settings.put("acks", "all");
    settings.put("linger.ms", args[5]);
    settings.put("compression.type", "lz4");
    settings.put("buffer.memory", String.valueOf(128L << 20));
    settings.put("batch.size", String.valueOf(256 << 10));
    settings.put("key.serializer", ByteArraySerializer.class.getName());
    settings.put("value.serializer", ByteArraySerializer.class.getName());

    byte[][] values = new byte[lines.size()][];
    byte[][] keys = new byte[lines.size()][];
    for (int i = 0; i < lines.size(); i++) {
      values[i] = lines.get(i).getBytes();
      keys[i] = UUID.randomUUID().toString().getBytes();
    }
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(settings)) {
      long start = System.nanoTime();
      for (long i = 0; i < count; i++) {
        if (i % PACE_EVERY == 0) {
          long early = start + i * 1_000_000_000L / rate - System.nanoTime();
          if (early > 0) {
            LockSupport.parkNanos(early);
          }
        }
        int line = (int) (i % values.length);
        producer.send(new ProducerRecord<>(topic, keys[line], values[line]));
      }
      producer.flush();
      double seconds = (System.nanoTime() - start) / 1e9;
      System.out.printf("events_per_second=%.0f", count / seconds);
      Set<String> wanted =
          Set.of(
              "request-total",
              "records-per-request-avg",
              "batch-size-avg",
              "bufferpool-wait-time-ns-total");
      producer.metrics().forEach((name, metric) -> {
        if (name.group().equals("producer-metrics") && wanted.contains(name.name())) {
          System.out.printf(" %s=%.1f", name.name(), (Double) metric.metricValue());
        }
      });
      System.out.println();
    }
  }
}
