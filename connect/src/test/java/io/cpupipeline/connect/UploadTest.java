package io.cpupipeline.connect;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** One upload: key, body and metadata as sink.ts writes them, and the 412 rule. */
class UploadTest {
  private static final String HOUR = "dt=2026-11-27/hour=11";

  private static PartitionFiles filesOf(int maxRecords, long... offsets) {
    PartitionFiles p = new PartitionFiles(new Limits(maxRecords, 1 << 20, 60_000));
    for (long o : offsets) p.add(o, HOUR, ("{\"n\":" + o + "}").getBytes(StandardCharsets.UTF_8), 0);
    return p;
  }

  @Test
  @DisplayName("a file is written under sink.ts's key with sink.ts's metadata, gzipped lines as the body")
  void writes() {
    MemoryStore store = new MemoryStore();
    PartitionFiles p = filesOf(3, 40, 41, 42);
    Upload.Outcome out = Upload.oldest(store, p, "cpu-levels", "readings", 2, true);
    assertTrue(out.written());
    String key = "cpu-levels/dt=2026-11-27/hour=11/readings+2+0000000040.jsonl.gz";
    assertEquals(key, out.key());
    MemoryStore.Stored stored = store.objects.get(key);
    assertEquals(Map.of("topic", "readings", "partition", "2", "start-offset", "40", "end-offset", "42", "records", "3"), stored.metadata());
    assertEquals(List.of("{\"n\":40}", "{\"n\":41}", "{\"n\":42}"), stored.lines());
    assertTrue(p.closed.isEmpty());
    assertEquals(43, p.safePoint());
  }

  @Test
  @DisplayName("without gzip the key ends in .jsonl and the body is the lines")
  void plain() {
    MemoryStore store = new MemoryStore();
    Upload.oldest(store, filesOf(1, 7), "", "t", 0, false);
    assertEquals("dt=2026-11-27/hour=11/t+0+0000000007.jsonl", store.objects.firstKey());
    assertEquals("{\"n\":7}\n", new String(store.objects.firstEntry().getValue().body(), StandardCharsets.UTF_8));
  }

  @Test
  @DisplayName("after a 412 the records the existing object holds are skipped, and the rest is written as the next file")
  void conflict() {
    MemoryStore store = new MemoryStore();
    // An earlier life wrote offsets 0-4 as one object; this life's files hold 2 records each.
    Upload.oldest(store, filesOf(5, 0, 1, 2, 3, 4), "p", "t", 0, true);
    PartitionFiles p = filesOf(2, 0, 1, 2, 3, 4, 5);
    Upload.Outcome first = Upload.oldest(store, p, "p", "t", 0, true);
    assertFalse(first.written());
    assertEquals(4, first.existingEndOffset());
    assertEquals(5, first.skipped());
    Upload.Outcome next = Upload.oldest(store, p, "p", "t", 0, true);
    assertTrue(next.written());
    assertEquals("p/dt=2026-11-27/hour=11/t+0+0000000005.jsonl.gz", next.key());
    assertEquals(List.of("{\"n\":5}"), store.objects.get(next.key()).lines());
    assertEquals(List.of("{\"n\":0}", "{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}"),
        store.objects.get("p/dt=2026-11-27/hour=11/t+0+0000000000.jsonl.gz").lines(), "the earlier object is untouched");
    assertTrue(p.inS3(3));
  }

  @Test
  @DisplayName("a replay of exactly what an object holds writes nothing new")
  void sameFileAgain() {
    MemoryStore store = new MemoryStore();
    Upload.oldest(store, filesOf(3, 0, 1, 2), "p", "t", 0, true);
    PartitionFiles p = filesOf(3, 0, 1, 2);
    Upload.Outcome again = Upload.oldest(store, p, "p", "t", 0, true);
    assertFalse(again.written());
    assertEquals(3, again.skipped());
    assertTrue(p.closed.isEmpty());
    assertEquals(1, store.objects.size());
    assertEquals(3, p.safePoint());
  }

  @Test
  @DisplayName("a failed write keeps the file, and its body is not made again for the retry")
  void failureKeepsFile() {
    MemoryStore store = new MemoryStore();
    store.down = true;
    PartitionFiles p = filesOf(2, 0, 1);
    assertThrows(IllegalStateException.class, () -> Upload.oldest(store, p, "p", "t", 0, true));
    byte[] body = p.closed.get(0).encoded;
    assertEquals(0, p.safePoint());
    store.down = false;
    assertTrue(Upload.oldest(store, p, "p", "t", 0, true).written());
    assertEquals(body.length, store.objects.firstEntry().getValue().body().length);
  }
}
