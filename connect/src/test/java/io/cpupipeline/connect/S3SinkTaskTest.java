package io.cpupipeline.connect;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Future;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.metrics.PluginMetrics;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.errors.RetriableException;
import org.apache.kafka.connect.sink.ErrantRecordReporter;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTaskContext;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** The task's dealings with Connect (put, preCommit, open, close), with an in-memory bucket and clock. */
class S3SinkTaskTest {
  private static final String TOPIC = "readings";
  private static final TopicPartition P0 = new TopicPartition(TOPIC, 0);
  private static final TopicPartition P1 = new TopicPartition(TOPIC, 1);
  private static final long T0 = Instant.parse("2026-11-27T12:00:00Z").toEpochMilli();

  /** What the task asked of Connect, and the dead-letter topic as the errant record reporter fills it. */
  private static final class Context implements SinkTaskContext {
    final List<Long> timeouts = new ArrayList<>();
    final List<SinkRecord> reported = new ArrayList<>();
    final List<Throwable> errors = new ArrayList<>();
    final List<CompletableFuture<Void>> writes = new ArrayList<>();
    boolean confirmAtOnce = true;

    @Override
    public Map<String, String> configs() {
      return Map.of();
    }

    @Override
    public void offset(Map<TopicPartition, Long> offsets) {}

    @Override
    public void offset(TopicPartition tp, long offset) {}

    @Override
    public void timeout(long timeoutMs) {
      timeouts.add(timeoutMs);
    }

    @Override
    public Set<TopicPartition> assignment() {
      return Set.of(P0, P1);
    }

    @Override
    public void pause(TopicPartition... partitions) {}

    @Override
    public void resume(TopicPartition... partitions) {}

    @Override
    public void requestCommit() {}

    @Override
    public ErrantRecordReporter errantRecordReporter() {
      return (record, error) -> {
        reported.add(record);
        errors.add(error);
        CompletableFuture<Void> f = confirmAtOnce ? CompletableFuture.completedFuture(null) : new CompletableFuture<>();
        writes.add(f);
        return (Future<Void>) f;
      };
    }

    @Override
    public PluginMetrics pluginMetrics() {
      return null;
    }
  }

  private MemoryStore store;
  private Context context;
  private long now;
  private S3SinkTask task;

  private void start(Map<String, String> settings) {
    store = new MemoryStore();
    context = new Context();
    now = T0;
    task = new S3SinkTask(c -> store, () -> now);
    task.initialize(context);
    Map<String, String> props = new HashMap<>(Map.of("s3.bucket", "test-bucket", "s3.region", "us-east-1", "file.max.age.seconds", "60"));
    props.putAll(settings);
    task.start(props);
    task.open(List.of(P0, P1));
  }

  @BeforeEach
  void defaults() {
    start(Map.of("file.max.records", "3"));
  }

  private static String reading(int minute) {
    return "{\"schema_version\":1,\"window_start\":\"" + Instant.parse("2026-11-27T11:58:00Z").plusSeconds(60L * minute)
        + "\",\"window_end\":\"2026-11-27T12:00:00Z\",\"window_seconds\":60,\"node\":\"n\",\"pod\":\"p" + minute
        + "\",\"namespace\":\"\",\"host\":{\"cores\":2,\"busy_percent\":1,\"user_percent\":1,\"system_percent\":0,\"iowait_percent\":0,"
        + "\"steal_percent\":0,\"idle_percent\":99},\"container\":null,\"container_unavailable_reason\":\"none\"}";
  }

  /** A pod's reading (kind "pod") of the same window as reading(minute), on the same node. */
  private static String podReading(int minute) {
    return "{\"kind\":\"pod\",\"schema_version\":1,\"window_start\":\"" + Instant.parse("2026-11-27T11:58:00Z").plusSeconds(60L * minute)
        + "\",\"window_end\":\"2026-11-27T12:00:00Z\",\"window_seconds\":60,\"node\":\"n\","
        + "\"pod_uid\":\"6f0b2a51-3c8d-4e7f-9a1b-2c3d4e5f6a7b\",\"pod\":null,\"namespace\":null,\"qos_class\":\"BestEffort\","
        + "\"cgroup_version\":2,\"cores_used\":0.01,\"request_cores\":null,\"limit_cores\":null,\"request_percent\":null,"
        + "\"limit_percent\":null,\"throttled_seconds\":null}";
  }

  private static SinkRecord record(TopicPartition tp, long offset, Object value) {
    Object bytes = value instanceof String s ? s.getBytes(StandardCharsets.UTF_8) : value;
    return new SinkRecord(tp.topic(), tp.partition(), Schema.OPTIONAL_BYTES_SCHEMA, "node".getBytes(StandardCharsets.UTF_8),
        Schema.OPTIONAL_BYTES_SCHEMA, bytes, offset);
  }

  private Map<TopicPartition, OffsetAndMetadata> consumed(long p0, long p1) {
    return Map.of(P0, new OffsetAndMetadata(p0), P1, new OffsetAndMetadata(p1));
  }

  private static long offsetOf(Map<TopicPartition, OffsetAndMetadata> offsets, TopicPartition tp) {
    return offsets.containsKey(tp) ? offsets.get(tp).offset() : -1;
  }

  @Test
  @DisplayName("a full file goes to S3 in the same put, and preCommit hands back only what is in S3")
  void fullFile() {
    task.put(List.of(record(P0, 0, reading(0)), record(P0, 1, reading(1)), record(P0, 2, reading(1)), record(P0, 3, reading(1))));
    assertEquals(List.of("cpu-levels/dt=2026-11-27/hour=11/readings+0+0000000000.jsonl.gz"), List.copyOf(store.objects.keySet()));
    assertEquals(List.of(reading(0), reading(1), reading(1)), store.objects.firstEntry().getValue().lines());
    Map<TopicPartition, OffsetAndMetadata> safe = task.preCommit(consumed(4, 0));
    assertEquals(3, offsetOf(safe, P0), "offset 3 is still in the open file");
    assertEquals(-1, offsetOf(safe, P1), "nothing was read from partition 1: nothing to say of it");
  }

  @Test
  @DisplayName("a reading of the next hour closes the file; the hours get files of their own")
  void hours() {
    start(Map.of("file.max.records", "100"));
    task.put(List.of(record(P0, 0, reading(0)), record(P0, 1, reading(1)), record(P0, 2, reading(2)), record(P0, 3, reading(3))));
    assertEquals(List.of("cpu-levels/dt=2026-11-27/hour=11/readings+0+0000000000.jsonl.gz"), List.copyOf(store.objects.keySet()));
    now += 60_000;
    task.put(List.of());
    assertEquals(List.of(reading(2), reading(3)), store.objects.get("cpu-levels/dt=2026-11-27/hour=12/readings+0+0000000002.jsonl.gz").lines());
  }

  @Test
  @DisplayName("a quiet topic still flushes: an empty put after file.max.age.seconds writes the open file")
  void quiet() {
    task.put(List.of(record(P1, 5, reading(0))));
    assertEquals(List.of(1000L), context.timeouts, "put asks to be called again within a second");
    now += 59_999;
    task.put(List.of());
    assertTrue(store.objects.isEmpty());
    now += 1;
    task.put(List.of());
    assertEquals(List.of("cpu-levels/dt=2026-11-27/hour=11/readings+1+0000000005.jsonl.gz"), List.copyOf(store.objects.keySet()));
    assertEquals(6, offsetOf(task.preCommit(consumed(0, 6)), P1));
  }

  @Test
  @DisplayName("the tick is a quarter of file.max.age.seconds when that is under 4 s")
  void shortTick() {
    start(Map.of("file.max.age.seconds", "2"));
    task.put(List.of());
    assertEquals(List.of(500L), context.timeouts);
  }

  @Test
  @DisplayName("invalid records go to the errant record reporter with sink.ts's reason; their offsets wait for the write")
  void invalid() {
    context.confirmAtOnce = false;
    task.put(List.of(record(P0, 0, reading(0)), record(P0, 1, "not json"), record(P0, 2, null), record(P0, 3, reading(0).replace("\"schema_version\":1", "\"schema_version\":2"))));
    assertEquals(List.of(1L, 2L, 3L), context.reported.stream().map(SinkRecord::kafkaOffset).toList());
    assertEquals(List.of("not-json", "empty", "schema-version"),
        context.errors.stream().map(e -> assertInstanceOf(InvalidReadingException.class, e).reason()).toList());
    assertEquals("schema-version: schema_version 2 is not 1", context.errors.get(2).getMessage());
    now += 60_000;
    task.put(List.of());
    assertEquals(1, store.objects.size(), "the valid record is in S3");
    assertEquals(1, offsetOf(task.preCommit(consumed(4, 0)), P0), "the dead letters are not confirmed yet");
    context.writes.forEach(f -> f.complete(null));
    assertEquals(4, offsetOf(task.preCommit(consumed(4, 0)), P0));
  }

  @Test
  @DisplayName("a pod's reading is filed beside its node's, in the file of its hour; one that breaks its schema is a dead letter")
  void podReadings() {
    String noUid = podReading(0).replace("\"pod_uid\":\"6f0b2a51-3c8d-4e7f-9a1b-2c3d4e5f6a7b\",", "");
    task.put(List.of(record(P0, 0, reading(0)), record(P0, 1, podReading(0)), record(P0, 2, noUid), record(P0, 3, podReading(1))));
    assertEquals(List.of(2L), context.reported.stream().map(SinkRecord::kafkaOffset).toList());
    assertEquals("schema", assertInstanceOf(InvalidReadingException.class, context.errors.get(0)).reason());
    assertEquals(List.of(reading(0), podReading(0), podReading(1)), store.objects.firstEntry().getValue().lines());
    assertEquals(4, offsetOf(task.preCommit(consumed(4, 0)), P0));
  }

  @Test
  @DisplayName("a dead-letter write that failed keeps its offset uncommitted")
  void deadLetterFailed() {
    context.confirmAtOnce = false;
    task.put(List.of(record(P0, 0, "[]")));
    context.writes.get(0).completeExceptionally(new IllegalStateException("no broker"));
    assertEquals(0, offsetOf(task.preCommit(consumed(1, 0)), P0));
  }

  @Test
  @DisplayName("a batch handed again is ignored: each record is held once")
  void redelivered() {
    List<SinkRecord> batch = List.of(record(P0, 0, reading(0)), record(P0, 1, reading(0)));
    task.put(batch);
    task.put(batch);
    task.put(List.of(record(P0, 2, reading(0))));
    assertEquals(3, store.objects.firstEntry().getValue().lines().size());
    assertEquals(3, offsetOf(task.preCommit(consumed(3, 0)), P0));
  }

  @Test
  @DisplayName("records an earlier life already wrote are skipped after a 412, and the rest written after them")
  void replay() {
    store.objects.put("cpu-levels/dt=2026-11-27/hour=11/readings+0+0000000000.jsonl.gz",
        new MemoryStore.Stored(new byte[0], Map.of("end-offset", "4"), true));
    List<SinkRecord> batch = new ArrayList<>();
    for (int i = 0; i < 7; i++) batch.add(record(P0, i, reading(1)));
    task.put(batch);
    now += 60_000;
    task.put(List.of());
    // Files of 3: 0-2 collides with the object of 0-4, so 3-5 becomes 5-5, and 6 has its own.
    assertEquals(List.of("cpu-levels/dt=2026-11-27/hour=11/readings+0+0000000000.jsonl.gz",
        "cpu-levels/dt=2026-11-27/hour=11/readings+0+0000000005.jsonl.gz",
        "cpu-levels/dt=2026-11-27/hour=11/readings+0+0000000006.jsonl.gz"), List.copyOf(store.objects.keySet()));
    assertEquals(List.of(reading(1)), store.objects.get("cpu-levels/dt=2026-11-27/hour=11/readings+0+0000000005.jsonl.gz").lines());
    assertEquals(7, offsetOf(task.preCommit(consumed(7, 0)), P0));
  }

  @Test
  @DisplayName("an existing object that reaches past what was consumed commits no more than was consumed")
  void replayAhead() {
    store.objects.put("cpu-levels/dt=2026-11-27/hour=11/readings+0+0000000000.jsonl.gz",
        new MemoryStore.Stored(new byte[0], Map.of("end-offset", "99"), true));
    task.put(List.of(record(P0, 0, reading(1)), record(P0, 1, reading(1)), record(P0, 2, reading(1))));
    assertEquals(3, offsetOf(task.preCommit(consumed(3, 0)), P0));
    task.put(List.of(record(P0, 3, reading(1))));
    assertEquals(4, offsetOf(task.preCommit(consumed(4, 0)), P0), "offset 3 was skipped: an object holds it");
  }

  @Test
  @DisplayName("S3 away: uploads are retried with a backoff, and at buffer.max.bytes put stops taking records until S3 is back")
  void backpressure() {
    start(Map.of("file.max.records", "1", "buffer.max.bytes", "1024", "file.max.bytes", "1024"));
    store.down = true;
    List<SinkRecord> first = new ArrayList<>();
    for (int i = 0; i < 4; i++) first.add(record(P0, i, reading(0))); // 4 x 330 bytes: over the budget
    task.put(first);
    assertEquals(1, store.puts, "the first failure ends the round");
    List<SinkRecord> next = List.of(record(P0, 4, reading(0)));
    assertThrows(RetriableException.class, () -> task.put(next), "over the budget, the batch is refused");
    assertEquals(1, store.puts, "no retry before the backoff");
    now += 500;
    assertThrows(RetriableException.class, () -> task.put(next));
    assertEquals(2, store.puts, "retried after the backoff");
    store.down = false;
    now += 1000;
    task.put(next); // Connect hands the same batch again
    assertEquals(5, store.objects.size());
    assertEquals(5, offsetOf(task.preCommit(consumed(5, 0)), P0));
  }

  @Test
  @DisplayName("a closed partition drops what it held; reopened, it starts from what Connect hands it")
  void closed() {
    task.put(List.of(record(P0, 0, reading(0)), record(P0, 1, reading(0))));
    task.close(List.of(P0));
    assertEquals(Map.of(), task.preCommit(consumed(2, 0)));
    task.open(List.of(P0));
    task.put(List.of(record(P0, 0, reading(0)), record(P0, 1, reading(0)), record(P0, 2, reading(0))));
    assertEquals(3, store.objects.firstEntry().getValue().lines().size());
  }

  @Test
  @DisplayName("a record value that is not bytes stops the task with a message naming value.converter")
  void notBytes() {
    ConnectException e = assertThrows(ConnectException.class, () -> task.put(List.of(record(P0, 0, Map.of("a", 1)))));
    assertTrue(e.getMessage().contains("value.converter=org.apache.kafka.connect.converters.ByteArrayConverter"), e.getMessage());
  }
}
