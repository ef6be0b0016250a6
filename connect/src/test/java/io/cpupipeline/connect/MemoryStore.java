package io.cpupipeline.connect;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.zip.GZIPInputStream;

/** An in-memory bucket with conditional writes, for the unit tests; can be told to fail. */
final class MemoryStore implements ObjectStore {
  record Stored(byte[] body, Map<String, String> metadata, boolean gzip) {
    /** The body's lines, un-gzipped. */
    List<String> lines() {
      byte[] raw = body;
      if (gzip) {
        try (GZIPInputStream in = new GZIPInputStream(new ByteArrayInputStream(body))) {
          raw = in.readAllBytes();
        } catch (IOException e) {
          throw new UncheckedIOException(e);
        }
      }
      String text = new String(raw, StandardCharsets.UTF_8);
      return text.isEmpty() ? List.of() : List.of(text.substring(0, text.length() - 1).split("\n", -1));
    }
  }

  final TreeMap<String, Stored> objects = new TreeMap<>();
  /** While true, every write fails as an unreachable S3 would. */
  boolean down;
  int puts;

  @Override
  public PutResult putIfAbsent(String key, byte[] body, Map<String, String> metadata, boolean gzip) {
    puts++;
    if (down) throw new IllegalStateException("S3 is down");
    Stored there = objects.get(key);
    if (there != null) return PutResult.exists(Long.parseLong(there.metadata().get("end-offset")));
    objects.put(key, new Stored(body.clone(), Map.copyOf(metadata), gzip));
    return PutResult.WRITTEN;
  }
}
