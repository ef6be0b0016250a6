package io.cpupipeline.connect;

import org.apache.kafka.connect.errors.DataException;

/**
 * A record that is not a valid reading, as handed to Connect's errant record reporter: the
 * dead-letter topic gets the record's own bytes, and with errors.deadletterqueue.context.headers.enable
 * this class and the message "<reason>: <detail>" (sink.ts's dlq-reason and dlq-detail) as headers.
 */
public class InvalidReadingException extends DataException {
  private static final long serialVersionUID = 1L;
  private final String reason;

  public InvalidReadingException(String reason, String detail) {
    super(reason + ": " + detail);
    this.reason = reason;
  }

  /** sink.ts's dead-letter reason: empty, oversize, not-json, duplicate-key, not-object, schema-version, schema. */
  public String reason() {
    return reason;
  }
}
