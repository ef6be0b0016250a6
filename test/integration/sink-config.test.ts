/**
 * `tsx sink.ts` with a wrong setting: the real program stops before it connects, exits 2,
 * and names the variable, the value and what was expected.
 */
import { configErrorTests } from '../helpers.ts';

const cases: Array<[env: Record<string, string>, expected: RegExp]> = [
  [{ S3_BUCKET: 'Not_A_Bucket' }, /S3_BUCKET="Not_A_Bucket": expected an S3 bucket name/],
  [{ S3_ENDPOINT: 'minio:9000' }, /S3_ENDPOINT="minio:9000": expected an http\(s\):\/\/ URL/],
  [{ FILE_MAX_AGE_SECONDS: 'soon' }, /FILE_MAX_AGE_SECONDS="soon": expected a number of seconds from 1 to 86400/],
  [{ FILE_GZIP: 'maybe' }, /FILE_GZIP="maybe": expected true or false/],
  [{ KAFKA_DLQ_TOPIC: 'cpu-levels' }, /KAFKA_DLQ_TOPIC="cpu-levels": expected a topic other than KAFKA_TOPIC/],
  [{ AWS_REGION: 'Ireland' }, /AWS_REGION="Ireland": expected an AWS region/],
  [{ KAFKA_CONFIG_NO_SUCH_PROPERTY: 'x' }, /KAFKA_CONFIG_NO_SUCH_PROPERTY: No such configuration property: "no.such.property"/],
];

configErrorTests('sink', cases);
