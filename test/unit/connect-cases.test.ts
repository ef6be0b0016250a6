import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { casesFile, casesText } from '../../scripts/connect-cases.ts';

test("the connector's unit tests hold it to what sink.ts says now (connect/src/test/resources/sink-ts-cases.json is current)", () => {
  const committed = readFileSync(casesFile, 'utf8');
  assert.ok(JSON.parse(committed).records.length > 100, 'the file holds the record cases');
  assert.equal(
    committed,
    casesText(),
    'sink.ts changed: run `node --import tsx scripts/connect-cases.ts` and make the connector pass again',
  );
});
