package io.cpupipeline.connect;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One upload of a partition's oldest closed file, as sink.ts does it: its key and metadata from
 * its data, a conditional write, and after a 412 (the key exists: an earlier life of this
 * partition, or another worker during a rebalance, wrote it) every record up to the existing
 * object's end offset dropped, so that the rest is written as the next file.
 */
final class Upload {
  private Upload() {}

  /** What one upload did: wrote a file (key, records, bytes), or found its key taken and skipped records. */
  record Outcome(String key, boolean written, long startOffset, long endOffset, int records, int bodyBytes, long existingEndOffset, int skipped) {}

  /** The object metadata sink.ts writes: where the records came from, and how many. */
  static Map<String, String> metadata(String topic, int partition, FileData file) {
    Map<String, String> meta = new LinkedHashMap<>();
    meta.put("topic", topic);
    meta.put("partition", String.valueOf(partition));
    meta.put("start-offset", String.valueOf(file.first()));
    meta.put("end-offset", String.valueOf(file.last()));
    meta.put("records", String.valueOf(file.records()));
    return meta;
  }

  /** Uploads files.closed.get(0); throws what the store threw (the file stays, for a retry). */
  static Outcome oldest(ObjectStore store, PartitionFiles files, String prefix, String topic, int partition, boolean gzip) {
    FileData file = files.closed.get(0);
    if (file.encoded == null) file.encoded = file.encode(gzip);
    String key = Readings.objectKey(prefix, file.hour, topic, partition, file.first(), gzip);
    ObjectStore.PutResult result = store.putIfAbsent(key, file.encoded, metadata(topic, partition, file), gzip);
    if (result.written()) {
      files.written(file);
      return new Outcome(key, true, file.first(), file.last(), file.records(), file.encoded.length, -1, 0);
    }
    int skipped = files.presentThrough(result.existingEndOffset());
    return new Outcome(key, false, file.first(), file.last(), file.records(), file.encoded.length, result.existingEndOffset(), skipped);
  }
}
