package io.cpupipeline.connect;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.zip.GZIPOutputStream;

/**
 * One file: a contiguous run of one partition's offsets within one hour (sink.ts's FileData). Held
 * as the bytes of its body (each line and its newline, exactly as produced) in a few chunks that
 * double from 16 KiB to 1 MiB, plus each line's offset and end: no object per record.
 */
final class FileData {
  final String hour;
  /** When the first record arrived, ms: a file's age counts from here. */
  final long openedAt;
  private long[] offsets = new long[64];
  private long[] ends = new long[64]; // where each line ends in the body, its newline included
  private int records;
  private final List<byte[]> chunks = new ArrayList<>();
  private int used; // bytes used in the last chunk
  private long bytes;
  /** The object body, made once when the file is first uploaded (kept for a retry). */
  byte[] encoded;

  FileData(String hour, long openedAt) {
    this.hour = hour;
    this.openedAt = openedAt;
  }

  int records() {
    return records;
  }

  long bytes() {
    return bytes;
  }

  long first() {
    if (records == 0) throw new IllegalStateException("an empty file has no first offset");
    return offsets[0];
  }

  long last() {
    if (records == 0) throw new IllegalStateException("an empty file has no last offset");
    return offsets[records - 1];
  }

  void append(long offset, byte[] line) {
    int size = line.length + 1;
    byte[] chunk = chunks.isEmpty() ? null : chunks.get(chunks.size() - 1);
    if (chunk == null || chunk.length - used < size) {
      if (chunk != null) chunks.set(chunks.size() - 1, Arrays.copyOf(chunk, used));
      chunk = new byte[Math.max(size, Math.min(1 << 20, 16_384 << Math.min(chunks.size(), 6)))];
      chunks.add(chunk);
      used = 0;
    }
    System.arraycopy(line, 0, chunk, used, line.length);
    chunk[used + line.length] = '\n';
    used += size;
    bytes += size;
    if (records == offsets.length) {
      offsets = Arrays.copyOf(offsets, records * 2);
      ends = Arrays.copyOf(ends, records * 2);
    }
    offsets[records] = offset;
    ends[records] = bytes;
    records++;
  }

  /** Writes the body: every line appended, each followed by a newline. */
  void writeBody(OutputStream out) throws IOException {
    for (int i = 0; i < chunks.size(); i++) out.write(chunks.get(i), 0, i == chunks.size() - 1 ? used : chunks.get(i).length);
  }

  /** The object body: the lines as they were appended, gzipped or as they are. */
  byte[] encode(boolean gzip) {
    try {
      ByteArrayOutputStream out = new ByteArrayOutputStream((int) Math.min(Integer.MAX_VALUE - 8, gzip ? bytes / 8 + 64 : bytes));
      if (gzip) {
        try (GZIPOutputStream zip = new GZIPOutputStream(out, 65_536)) {
          writeBody(zip);
        }
      } else {
        writeBody(out);
      }
      return out.toByteArray();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The records above {@code offset} as a file of their own (this one if that is all of them), or null. */
  FileData after(long offset) {
    int i = 0;
    while (i < records && offsets[i] <= offset) i++;
    if (i == 0) return this;
    if (i == records) return null;
    ByteArrayOutputStream all = new ByteArrayOutputStream((int) bytes);
    try {
      writeBody(all);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    byte[] body = all.toByteArray();
    FileData rest = new FileData(hour, openedAt);
    for (int j = i; j < records; j++) rest.append(offsets[j], Arrays.copyOfRange(body, (int) ends[j - 1], (int) ends[j] - 1));
    return rest;
  }
}
