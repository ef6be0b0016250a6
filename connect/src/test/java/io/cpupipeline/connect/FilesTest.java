package io.cpupipeline.connect;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** FileData, the rotation rule and PartitionFiles: sink.ts's unit tests of the same parts, in Java. */
class FilesTest {
  private static final String HOUR5 = "dt=2026-11-27/hour=05";
  private static final String HOUR6 = "dt=2026-11-27/hour=06";
  private static final long AT = 1_800_000_000_000L;

  private static byte[] line(long offset) {
    return ("{\"n\":" + offset + "}").getBytes(StandardCharsets.UTF_8);
  }

  private static FileData fileOf(long... offsets) {
    FileData f = new FileData(HOUR5, 1_000);
    for (long o : offsets) f.append(o, line(o));
    return f;
  }

  private static String text(FileData f) {
    return new String(f.encode(false), StandardCharsets.UTF_8);
  }

  private static PartitionFiles core(int maxRecords) {
    return new PartitionFiles(new Limits(maxRecords, 1_000_000, 60_000));
  }

  private static List<FileData> add(PartitionFiles p, long offset) {
    return p.add(offset, HOUR5, line(offset), AT);
  }

  private static String ranges(List<FileData> files) {
    return files.stream().map(f -> f.first() + "-" + f.last()).collect(Collectors.joining(","));
  }

  // ---------------------------------------------------------------- FileData

  @Test
  @DisplayName("FileData holds each line followed by a newline, exactly as appended")
  void fileHoldsLines() {
    FileData f = fileOf(3, 4, 7);
    assertEquals("{\"n\":3}\n{\"n\":4}\n{\"n\":7}\n", text(f));
    assertEquals(List.of(3L, 3L, 7L, 24L), List.of((long) f.records(), f.first(), f.last(), f.bytes()));
  }

  @Test
  @DisplayName("FileData keeps bytes that are not UTF-8 exactly as they were produced")
  void fileKeepsBytes() {
    FileData f = new FileData("h", 0);
    f.append(0, new byte[] {(byte) 0xff, 0x00, 0x7b});
    assertArrayEquals(new byte[] {(byte) 0xff, 0x00, 0x7b, 0x0a}, f.encode(false));
  }

  @Test
  @DisplayName("FileData grows past many chunks and a line larger than a chunk without losing a byte")
  void fileGrows() {
    FileData f = new FileData("h", 0);
    ByteArrayOutputStream expected = new ByteArrayOutputStream();
    for (int i = 0; i < 3000; i++) {
      byte[] l = new byte[i % 7 == 0 ? 40_000 : 300 + i];
      Arrays.fill(l, (byte) ('a' + i % 26));
      f.append(i, l);
      expected.writeBytes(l);
      expected.write('\n');
    }
    assertArrayEquals(expected.toByteArray(), f.encode(false));
    assertEquals(expected.size(), f.bytes());
    assertEquals(3000, f.records());
  }

  @Test
  @DisplayName("FileData.after keeps the records above an offset, in order, as a new file")
  void fileAfter() {
    FileData rest = fileOf(3, 4, 7, 9).after(4);
    assertEquals("{\"n\":7}\n{\"n\":9}\n", text(rest));
    assertEquals(List.of(7L, 2L, 16L), List.of(rest.first(), (long) rest.records(), rest.bytes()));
  }

  @Test
  @DisplayName("FileData.after is the same file below its first record, and nothing past its last")
  void fileAfterEdges() {
    FileData f = fileOf(3, 4);
    assertSame(f, f.after(2));
    assertNull(f.after(4));
    assertNull(f.after(10));
  }

  @Test
  @DisplayName("a gzip body gunzips to exactly the lines; without gzip the body is the lines")
  void encode() throws IOException {
    long[] offsets = new long[500];
    for (int i = 0; i < offsets.length; i++) offsets[i] = i;
    FileData f = fileOf(offsets);
    byte[] gz = f.encode(true);
    assertEquals(0x1f, gz[0] & 0xff);
    assertEquals(0x8b, gz[1] & 0xff);
    try (GZIPInputStream in = new GZIPInputStream(new ByteArrayInputStream(gz))) {
      assertArrayEquals(f.encode(false), in.readAllBytes());
    }
  }

  // ---------------------------------------------------------------- rotation

  private static final Limits LIMITS = new Limits(3, 1_000, 60_000);

  private static FileData file(int count, int bytesEach) {
    FileData f = new FileData(HOUR5, AT);
    for (int i = 0; i < count; i++) {
      byte[] l = new byte[bytesEach - 1];
      Arrays.fill(l, (byte) 'a');
      f.append(i, l);
    }
    return f;
  }

  @Test
  @DisplayName("rotation is not due while the file is below every limit")
  void rotationNotDue() {
    assertNull(LIMITS.rotationDue(file(2, 499), AT + 59_999));
  }

  @Test
  @DisplayName("rotation is due by records when the file holds maxRecords records")
  void rotationRecords() {
    assertEquals("records", LIMITS.rotationDue(file(3, 10), AT));
  }

  @Test
  @DisplayName("rotation is due by bytes when the file holds maxBytes bytes")
  void rotationBytes() {
    assertEquals("bytes", LIMITS.rotationDue(file(2, 500), AT));
  }

  @Test
  @DisplayName("rotation is due by age when maxAgeMs has passed since the first record")
  void rotationAge() {
    assertEquals("age", LIMITS.rotationDue(file(1, 10), AT + 60_000));
  }

  @Test
  @DisplayName("rotation says records when records, bytes and age are all due")
  void rotationOrder() {
    assertEquals("records", LIMITS.rotationDue(file(3, 500), AT + 60_000));
  }

  // ---------------------------------------------------------------- PartitionFiles

  @Test
  @DisplayName("a file closes when it holds maxRecords records, and the next opens at the following offset")
  void closesWhenFull() {
    PartitionFiles p = core(3);
    assertTrue(add(p, 0).isEmpty());
    assertTrue(add(p, 1).isEmpty());
    List<FileData> full = add(p, 2);
    assertEquals("{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n", text(full.get(0)));
    add(p, 3);
    assertEquals(1, p.closed.size());
    assertEquals(3, p.open.first());
  }

  @Test
  @DisplayName("a record of another hour closes the open file first")
  void hourChangeCloses() {
    PartitionFiles p = core(10);
    add(p, 0);
    add(p, 1);
    List<FileData> closed = p.add(2, HOUR6, line(2), AT);
    assertEquals(1, closed.size());
    assertEquals(HOUR5, closed.get(0).hour);
    assertEquals("0-1", ranges(closed));
    assertEquals(HOUR6, p.open.hour);
    assertEquals(2, p.open.first());
  }

  @Test
  @DisplayName("a late reading of an earlier hour gets a file of its own, and the next reading another")
  void lateReading() {
    PartitionFiles p = core(10);
    p.add(0, HOUR6, line(0), AT);
    p.add(1, HOUR5, line(1), AT);
    p.add(2, HOUR6, line(2), AT);
    p.close();
    assertEquals("0-0,1-1,2-2", ranges(p.closed));
    assertEquals(List.of(HOUR6, HOUR5, HOUR6), p.closed.stream().map(f -> f.hour).toList());
  }

  @Test
  @DisplayName("a quiet file closes by age alone")
  void quietCloses() {
    PartitionFiles p = core(10);
    add(p, 0);
    assertNull(p.closeIfOld(AT + 59_999));
    assertEquals(0, p.closeIfOld(AT + 60_000).first());
  }

  @Test
  @DisplayName("the group may start again only from the first record not yet in S3")
  void safePoint() {
    PartitionFiles p = core(2);
    assertEquals(0, p.safePoint());
    for (long o = 0; o < 5; o++) add(p, o);
    assertEquals(0, p.safePoint(), "two closed files and an open one: nothing is safe");
    p.written(p.closed.get(0));
    assertEquals(2, p.safePoint());
    p.written(p.closed.get(0));
    assertEquals(4, p.safePoint(), "offset 4 is still in the open file");
    p.written(p.close());
    assertEquals(5, p.safePoint());
    assertEquals(0, p.heldBytes);
  }

  @Test
  @DisplayName("a dead letter holds the commit until it is confirmed, even when later files are in S3")
  void deadLetterHolds() {
    PartitionFiles p = core(2);
    add(p, 0);
    p.deadLetter(1, 50);
    add(p, 2);
    p.written(p.closed.get(0));
    assertEquals(1, p.safePoint());
    p.deadLettered(1);
    assertEquals(3, p.safePoint());
    assertEquals(0, p.heldBytes);
  }

  @Test
  @DisplayName("files are written oldest first; any other is refused")
  void oldestFirst() {
    PartitionFiles p = core(1);
    add(p, 0);
    add(p, 1);
    assertThrows(IllegalStateException.class, () -> p.written(p.closed.get(1)));
  }

  @Test
  @DisplayName("the 412 rule: what an existing object holds is dropped in every file and skipped when it comes again")
  void presentThrough() {
    // An earlier life wrote offsets 0-4 in one object; this life closes files of 2 records.
    PartitionFiles p = core(2);
    for (long o = 0; o <= 5; o++) add(p, o);
    assertEquals("0-1,2-3,4-5", ranges(p.closed));
    assertEquals(5, p.presentThrough(4));
    assertEquals("5-5", ranges(p.closed));
    assertEquals("{\"n\":5}\n", text(p.closed.get(0)));
    assertEquals(8, p.heldBytes);
    assertEquals(5, p.safePoint());
    assertTrue(p.inS3(3), "a record up to the existing end is not held again");
    assertFalse(p.inS3(6));
  }

  @Test
  @DisplayName("the 412 rule keeps the rest of a file an existing object only partly holds, as a file that starts after it")
  void presentThroughPartly() {
    PartitionFiles p = core(5);
    for (long o = 10; o <= 14; o++) add(p, o);
    p.presentThrough(12);
    assertEquals("13-14", ranges(p.closed));
    assertEquals(2, p.closed.get(0).records());
    assertEquals(13, p.safePoint());
  }

  @Test
  @DisplayName("the 412 rule also trims the open file")
  void presentThroughOpen() {
    PartitionFiles p = core(3);
    for (long o = 0; o <= 4; o++) add(p, o);
    assertEquals(4, p.presentThrough(3));
    assertTrue(p.closed.isEmpty());
    assertEquals("4-4", ranges(List.of(p.open)));
    assertEquals(4, p.safePoint());
  }

  @Test
  @DisplayName("the records and bytes held are counted")
  void counts() {
    PartitionFiles p = core(2);
    for (long o = 0; o <= 2; o++) add(p, o);
    p.deadLetter(3, 100);
    assertEquals(4, p.records());
    assertEquals(3 * 8 + 100, p.heldBytes);
  }
}
