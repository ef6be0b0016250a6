package io.cpupipeline.connect;

/** When a file is closed: by records, bytes, or age since its first record (sink.ts's Limits). */
record Limits(int maxRecords, long maxBytes, long maxAgeMs) {
  /** Why a file must be closed now, or null. */
  String rotationDue(FileData file, long nowMs) {
    if (file.records() >= maxRecords) return "records";
    if (file.bytes() >= maxBytes) return "bytes";
    if (nowMs - file.openedAt >= maxAgeMs) return "age";
    return null;
  }
}
