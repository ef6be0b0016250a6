package io.cpupipeline.connect;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;

/**
 * Everything held for one partition, and the rules that keep it exactly-once (sink.ts's
 * PartitionFiles): records enter the open file in offset order; a file closes by records, bytes,
 * age or a change of hour; closed files go to S3 oldest first, one at a time; an object that turns
 * out to exist already drops what it holds, here and in what is still to come; and the group may
 * only start again from the first record that is not yet safe. No Kafka and no S3 here.
 */
final class PartitionFiles {
  FileData open;
  /** Closed files, oldest first; closed.get(0) is the next upload. */
  final List<FileData> closed = new ArrayList<>();
  /** Offsets whose dead-letter write is not confirmed yet, with their bytes. */
  final TreeMap<Long, Long> deadLetters = new TreeMap<>();
  /** The highest offset that is held here, dead-lettered, or known to be in S3. */
  long handled = -1;
  /** Offsets up to this one are in an object in S3 already (learnt from a 412). */
  long skipThrough = -1;
  /** Bytes held: open and closed files, dead letters not yet confirmed. */
  long heldBytes;

  private final Limits limits;

  PartitionFiles(Limits limits) {
    this.limits = limits;
  }

  /** True when an object in S3 already holds this record: it is handled, nothing is held. */
  boolean inS3(long offset) {
    if (offset > skipThrough) return false;
    handled = Math.max(handled, offset);
    return true;
  }

  /** Adds a record to the open file; returns the files this closed (on a change of hour, when full). */
  List<FileData> add(long offset, String hour, byte[] line, long nowMs) {
    List<FileData> done = new ArrayList<>(2);
    if (open != null && !open.hour.equals(hour)) done.add(close());
    if (open == null) open = new FileData(hour, nowMs);
    open.append(offset, line);
    heldBytes += line.length + 1;
    handled = offset;
    String due = limits.rotationDue(open, nowMs);
    if ("records".equals(due) || "bytes".equals(due)) done.add(close());
    return done;
  }

  /** Closes the open file when its age says so (a quiet partition flushes too). */
  FileData closeIfOld(long nowMs) {
    return open != null && limits.rotationDue(open, nowMs) != null ? close() : null;
  }

  FileData close() {
    FileData file = open;
    if (file != null) closed.add(file);
    open = null;
    return file;
  }

  /** A record on its way to the dead-letter topic: not safe to commit past until confirmed. */
  void deadLetter(long offset, long bytes) {
    deadLetters.put(offset, bytes);
    heldBytes += bytes;
    handled = offset;
  }

  void deadLettered(long offset) {
    Long bytes = deadLetters.remove(offset);
    if (bytes != null) heldBytes -= bytes;
  }

  /** closed.get(0) is in S3 now. */
  void written(FileData file) {
    if (closed.isEmpty() || closed.get(0) != file) throw new IllegalStateException("the file written is not the oldest one");
    closed.remove(0);
    heldBytes -= file.bytes();
  }

  /**
   * An object in S3 already holds this partition's offsets up to endOffset (the key of
   * closed.get(0) existed): drops those records here, in every later file, and in all that is
   * still to come. Returns how many records were dropped.
   */
  int presentThrough(long endOffset) {
    skipThrough = Math.max(skipThrough, endOffset);
    handled = Math.max(handled, endOffset);
    int dropped = 0;
    List<FileData> kept = new ArrayList<>(closed.size());
    for (FileData file : closed) {
      FileData rest = file.after(endOffset);
      dropped += file.records() - (rest == null ? 0 : rest.records());
      heldBytes -= file.bytes() - (rest == null ? 0 : rest.bytes());
      if (rest != null) kept.add(rest);
    }
    closed.clear();
    closed.addAll(kept);
    if (open != null) {
      FileData rest = open.after(endOffset);
      dropped += open.records() - (rest == null ? 0 : rest.records());
      heldBytes -= open.bytes() - (rest == null ? 0 : rest.bytes());
      open = rest;
    }
    return dropped;
  }

  /** Records held here: in open and closed files, and dead letters not yet confirmed. */
  int records() {
    int n = open == null ? 0 : open.records();
    for (FileData f : closed) n += f.records();
    return n + deadLetters.size();
  }

  /** The offset the group may start from again: the first record still held, or the next one. */
  long safePoint() {
    long safe = handled + 1;
    if (!closed.isEmpty()) safe = Math.min(safe, closed.get(0).first());
    if (open != null) safe = Math.min(safe, open.first());
    if (!deadLetters.isEmpty()) safe = Math.min(safe, deadLetters.firstKey());
    return safe;
  }
}
