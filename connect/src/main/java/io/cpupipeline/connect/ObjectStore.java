package io.cpupipeline.connect;

import java.util.Map;

/** Where files go: S3 in the connector (S3Store), an in-memory stand-in in unit tests. */
interface ObjectStore extends AutoCloseable {
  /** What a conditional write found: the key was free and is written now, or an object was there. */
  record PutResult(boolean written, long existingEndOffset) {
    static final PutResult WRITTEN = new PutResult(true, -1);

    static PutResult exists(long endOffset) {
      return new PutResult(false, endOffset);
    }
  }

  /**
   * Writes an object only if its key is free (If-None-Match: *). When it exists, returns the end
   * offset recorded in its metadata, so that the caller can skip what it already holds.
   */
  PutResult putIfAbsent(String key, byte[] body, Map<String, String> metadata, boolean gzip);

  @Override
  default void close() {}
}
