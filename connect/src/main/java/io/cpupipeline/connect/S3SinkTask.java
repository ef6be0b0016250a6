package io.cpupipeline.connect;

import java.util.Collection;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.function.Function;
import java.util.function.LongSupplier;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.errors.RetriableException;
import org.apache.kafka.connect.sink.ErrantRecordReporter;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One task: its partitions' records into files, the files into S3, and offsets handed back to
 * Connect only once what they cover is in S3 (or confirmed in the dead-letter topic).
 *
 * How it uses Connect: put() takes each batch into the partitions' open files, closes files by
 * records, bytes, hour and age, and uploads closed files, oldest first per partition. It ends by
 * asking Connect (context.timeout) to call it again within a second even when no record comes,
 * so that a quiet topic's file still closes by age, and a failed upload is retried after its
 * backoff. preCommit() returns, per partition, the first offset not yet safe (what sink.ts
 * commits); Connect commits no more than that. When a task holds buffer.max.bytes, put() throws a
 * RetriableException: Connect pauses the partitions and hands the batch again later, the way
 * sink.ts pauses its consumer. Partitions that are closed (rebalance, stop) drop what they held:
 * it was not committed, so their next owner reads it again and writes it under the same keys.
 */
public class S3SinkTask extends SinkTask {
  private static final Logger log = LoggerFactory.getLogger(S3SinkTask.class);

  /** One partition this task owns: its files, and where its uploads and dead letters stand. */
  private static final class Owned {
    final PartitionFiles files;
    long retryAt;
    long delayMs = 500;
    final Map<Long, Future<Void>> deadLetters = new LinkedHashMap<>();

    Owned(Limits limits) {
      files = new PartitionFiles(limits);
    }
  }

  private final Function<S3SinkConfig, ObjectStore> stores;
  private final LongSupplier clock;
  private S3SinkConfig config;
  private Limits limits;
  private ObjectStore store;
  private ErrantRecordReporter reporter;
  private final Map<TopicPartition, Owned> owned = new LinkedHashMap<>();

  public S3SinkTask() {
    this(S3Store::new, System::currentTimeMillis);
  }

  /** For tests: another store, another clock. */
  S3SinkTask(Function<S3SinkConfig, ObjectStore> stores, LongSupplier clock) {
    this.stores = stores;
    this.clock = clock;
  }

  @Override
  public String version() {
    return S3SinkConnector.VERSION;
  }

  @Override
  public void start(Map<String, String> props) {
    config = new S3SinkConfig(props);
    limits = config.limits();
    store = stores.apply(config);
    try {
      reporter = context.errantRecordReporter();
    } catch (NoSuchMethodError | NoClassDefFoundError e) {
      reporter = null; // a worker older than Kafka 2.6
    }
    log.info("started: bucket={} prefix={} region={} endpoint={} gzip={} max_records={} max_bytes={} max_age_seconds={} buffer_max_bytes={}",
        config.bucket(), config.prefix(), config.region(), config.endpoint().isEmpty() ? "AWS" : config.endpoint(), config.gzip(),
        limits.maxRecords(), limits.maxBytes(), limits.maxAgeMs() / 1000.0, config.bufferMaxBytes());
  }

  @Override
  public void open(Collection<TopicPartition> partitions) {
    for (TopicPartition tp : partitions) owned.put(tp, new Owned(limits));
    log.info("partitions assigned: {}", partitions);
  }

  @Override
  public void close(Collection<TopicPartition> partitions) {
    for (TopicPartition tp : partitions) owned.remove(tp);
    log.info("partitions closed; what they held was not committed and is read again by their next owner: {}", partitions);
  }

  @Override
  public void put(Collection<SinkRecord> records) {
    long now = clock.getAsLong();
    settleDeadLetters();
    pump(now);
    if (held() >= config.bufferMaxBytes()) {
      // Backpressure: Connect pauses the partitions and gives this batch again after the timeout.
      context.timeout(tickMs());
      throw new RetriableException("memory budget full (" + held() + " of " + config.bufferMaxBytes()
          + " bytes held in files S3 has not taken yet); waiting for uploads");
    }
    for (SinkRecord record : records) handle(record, now);
    for (Owned o : owned.values()) o.files.closeIfOld(now);
    if (held() >= config.bufferMaxBytes()) closeLargestOpenFile();
    pump(now);
    context.timeout(tickMs());
  }

  @Override
  public Map<TopicPartition, OffsetAndMetadata> preCommit(Map<TopicPartition, OffsetAndMetadata> currentOffsets) {
    long now = clock.getAsLong();
    settleDeadLetters();
    for (Owned o : owned.values()) o.files.closeIfOld(now);
    pump(now);
    Map<TopicPartition, OffsetAndMetadata> safe = new HashMap<>();
    for (Map.Entry<TopicPartition, Owned> e : owned.entrySet()) {
      PartitionFiles files = e.getValue().files;
      OffsetAndMetadata consumed = currentOffsets.get(e.getKey());
      if (files.handled < 0 || consumed == null) continue;
      // An existing object may cover offsets not consumed yet: never more than Connect consumed.
      long offset = Math.min(files.safePoint(), consumed.offset());
      safe.put(e.getKey(), new OffsetAndMetadata(offset));
      log.debug("preCommit: {} safe {} of {} consumed", e.getKey(), offset, consumed.offset());
    }
    return safe;
  }

  @Override
  public void stop() {
    if (store != null) store.close();
    log.info("stopped");
  }

  /** How often put() wants to be called when no record comes: sink.ts's timer, min(1 s, age / 4). */
  private long tickMs() {
    return Math.max(1, Math.min(1000, limits.maxAgeMs() / 4));
  }

  private long held() {
    long n = 0;
    for (Owned o : owned.values()) n += o.files.heldBytes;
    return n;
  }

  /** A record arrived: into its partition's open file, or to the dead-letter topic, or skipped. */
  private void handle(SinkRecord record, long now) {
    TopicPartition tp = new TopicPartition(record.topic(), record.kafkaPartition());
    Owned o = owned.get(tp);
    if (o == null) {
      log.debug("record of a partition this task does not own; left to its owner: {} offset {}", tp, record.kafkaOffset());
      return;
    }
    long offset = record.kafkaOffset();
    if (offset <= o.files.handled) {
      log.debug("record seen again; ignored: {} offset {} (handled up to {})", tp, offset, o.files.handled);
      return;
    }
    if (o.files.inS3(offset)) return;
    Object value = record.value();
    if (value != null && !(value instanceof byte[])) {
      throw new ConnectException("record values must be bytes (value.converter=" + S3SinkConnector.BYTE_ARRAY_CONVERTER
          + "), so that the files hold them as they were produced; got " + value.getClass().getName());
    }
    byte[] bytes = (byte[]) value;
    Readings.Checked checked = Readings.check(bytes, config.recordMaxBytes());
    if (checked.ok()) {
      o.files.add(offset, checked.hour(), checked.line(), now);
    } else {
      deadLetter(o, record, bytes, checked);
    }
  }

  /** Hands an invalid record to Connect's dead-letter topic; its offset is held until that write is confirmed. */
  private void deadLetter(Owned o, SinkRecord record, byte[] value, Readings.Checked checked) {
    if (reporter == null) {
      throw new ConnectException("invalid record at " + record.topic() + "-" + record.kafkaPartition() + " offset " + record.kafkaOffset()
          + " (" + checked.reason() + ") and no errant record reporter: this worker is older than Kafka 2.6");
    }
    byte[] key = record.key() instanceof byte[] k ? k : new byte[0];
    long bytes = (value == null ? 0 : value.length) + key.length;
    Future<Void> written = reporter.report(record, new InvalidReadingException(checked.reason(), checked.detail()));
    o.files.deadLetter(record.kafkaOffset(), bytes);
    o.deadLetters.put(record.kafkaOffset(), written);
    log.warn("record dead-lettered: {}-{} offset {} reason={} detail={}", record.topic(), record.kafkaPartition(), record.kafkaOffset(),
        checked.reason(), checked.detail().length() > 200 ? checked.detail().substring(0, 200) : checked.detail());
  }

  /** Dead letters whose write is confirmed stop holding their offset back; a failed one keeps it. */
  private void settleDeadLetters() {
    for (Owned o : owned.values()) {
      for (Iterator<Map.Entry<Long, Future<Void>>> it = o.deadLetters.entrySet().iterator(); it.hasNext();) {
        Map.Entry<Long, Future<Void>> e = it.next();
        if (!e.getValue().isDone()) continue;
        try {
          e.getValue().get();
          o.files.deadLettered(e.getKey());
          it.remove();
        } catch (ExecutionException | CancellationException err) {
          // Not in the dead-letter topic: the offset stays held, and Connect fails the task on its next commit.
          log.error("dead-letter write failed; offset {} stays uncommitted: {}", e.getKey(), String.valueOf(err.getCause()));
        } catch (InterruptedException err) {
          Thread.currentThread().interrupt();
          return;
        }
      }
    }
  }

  /** When what is held reaches the budget and it all sits in open files, the largest goes to S3 early. */
  private void closeLargestOpenFile() {
    Owned largest = null;
    for (Owned o : owned.values()) {
      if (!o.files.closed.isEmpty()) return; // uploads will make room
      if (o.files.open != null && (largest == null || o.files.open.bytes() > largest.files.open.bytes())) largest = o;
    }
    if (largest != null) largest.files.close();
  }

  /**
   * Uploads closed files, oldest first per partition, partitions in turn. A failed upload is
   * retried after its backoff (0.5 s doubling to 30 s); the first failure ends this round, so
   * that an S3 outage costs one timeout per call, not one per partition.
   */
  private void pump(long now) {
    for (Map.Entry<TopicPartition, Owned> e : owned.entrySet()) {
      TopicPartition tp = e.getKey();
      Owned o = e.getValue();
      if (now < o.retryAt) continue;
      while (!o.files.closed.isEmpty()) {
        try {
          Upload.Outcome out = Upload.oldest(store, o.files, config.prefix(), tp.topic(), tp.partition(), config.gzip());
          if (out.written()) {
            log.info("object written: key={} partition={} start_offset={} end_offset={} records={} bytes={}", out.key(), tp.partition(),
                out.startOffset(), out.endOffset(), out.records(), out.bodyBytes());
          } else {
            log.info("object already in S3; skipping the records it holds: key={} partition={} existing_end_offset={} skipped={}",
                out.key(), tp.partition(), out.existingEndOffset(), out.skipped());
          }
          o.delayMs = 500;
        } catch (RuntimeException err) {
          o.retryAt = clock.getAsLong() + o.delayMs;
          log.error("upload failed; retrying: partition={} start_offset={} retry_in_ms={} error={}", tp, o.files.closed.get(0).first(),
              o.delayMs, err.toString());
          o.delayMs = Math.min(o.delayMs * 2, 30_000);
          return;
        }
      }
    }
  }
}
