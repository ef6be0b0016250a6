package io.cpupipeline.connect;

import java.io.ByteArrayInputStream;
import java.net.URI;
import java.time.Duration;
import java.util.Map;
import software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider;
import software.amazon.awssdk.core.retry.RetryMode;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.S3ClientBuilder;
import software.amazon.awssdk.services.s3.model.HeadObjectResponse;
import software.amazon.awssdk.services.s3.model.PutObjectRequest;
import software.amazon.awssdk.services.s3.model.S3Exception;

/**
 * The bucket, through the AWS SDK v2: its default credential chain (environment, web identity
 * for IRSA with sts on the classpath, EKS Pod Identity, profiles, instance profile; nothing here
 * reads keys itself), its standard retries (3 attempts), and a timeout on every attempt.
 */
final class S3Store implements ObjectStore {
  static final String CONTENT_TYPE = "application/x-ndjson";

  private final S3Client s3;
  private final String bucket;

  S3Store(S3SinkConfig config) {
    Duration timeout = Duration.ofMillis(config.requestTimeoutMs());
    S3ClientBuilder builder = S3Client.builder()
        .region(Region.of(config.region()))
        .credentialsProvider(DefaultCredentialsProvider.builder().build())
        .forcePathStyle(config.forcePathStyle())
        .overrideConfiguration(o -> o.retryStrategy(RetryMode.STANDARD).apiCallAttemptTimeout(timeout));
    if (!config.endpoint().isEmpty()) builder.endpointOverride(URI.create(config.endpoint()));
    this.s3 = builder.build();
    this.bucket = config.bucket();
  }

  @Override
  public PutResult putIfAbsent(String key, byte[] body, Map<String, String> metadata, boolean gzip) {
    PutObjectRequest request = PutObjectRequest.builder()
        .bucket(bucket)
        .key(key)
        .ifNoneMatch("*")
        .metadata(metadata)
        .contentType(CONTENT_TYPE)
        .contentEncoding(gzip ? "gzip" : null)
        .build();
    try {
      // The body as it is, read afresh for each attempt (fromBytes would copy it).
      s3.putObject(request, RequestBody.fromContentProvider(() -> new ByteArrayInputStream(body), body.length, CONTENT_TYPE));
      return PutResult.WRITTEN;
    } catch (S3Exception e) {
      if (e.statusCode() != 412) throw e;
    }
    HeadObjectResponse head = s3.headObject(b -> b.bucket(bucket).key(key));
    String end = head.metadata().get("end-offset");
    try {
      return PutResult.exists(Long.parseLong(end == null ? "" : end.trim()));
    } catch (NumberFormatException e) {
      throw new IllegalStateException(
          "s3://" + bucket + "/" + key + " exists without an end-offset in its metadata; it was not written by this sink");
    }
  }

  @Override
  public void close() {
    s3.close();
  }
}
