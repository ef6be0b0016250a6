import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { everyBoundary, nextBoundary } from '../../sampler.ts';

const at = (h: number, m: number, s = 0, ms = 0) => Date.UTC(2025, 0, 1, h, m, s, ms);
const iso = (ms: number) => new Date(ms).toISOString();

/** Mocked clock at 12:00:37.500 and a 60 s schedule; returns the boundaries ticked so far. */
function minuteSchedule(t: TestContext) {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: at(12, 0, 37, 500) });
  const ticks: string[] = [];
  const stop = everyBoundary(60_000, (boundary) => ticks.push(iso(boundary)));
  t.after(stop);
  return { ticks, stop };
}

/** Advances the mocked clock one minute at a time (a single big tick would be a clock jump). */
function minutes(t: TestContext, n: number) {
  for (let i = 0; i < n; i++) t.mock.timers.tick(60_000);
}

// ---------------------------------------------------------------- nextBoundary

test('nextBoundary from an exact boundary is the following boundary', () => {
  assert.equal(iso(nextBoundary(at(12, 1), 60_000)), '2025-01-01T12:02:00.000Z');
});

test('nextBoundary with 60 s lands on :00 of the next minute, UTC', () => {
  for (const now of [at(12, 0, 0, 1), at(12, 0, 37, 500), at(12, 0, 59, 999), at(23, 59, 30)]) {
    const next = new Date(nextBoundary(now, 60_000));
    assert.equal(next.getUTCSeconds() + next.getUTCMilliseconds(), 0, iso(now));
    assert.ok(next.getTime() > now && next.getTime() - now <= 60_000, iso(now));
  }
});

test('nextBoundary handles sub-second intervals', () => {
  assert.equal(iso(nextBoundary(at(12, 0, 0, 130), 250)), '2025-01-01T12:00:00.250Z');
  assert.equal(iso(nextBoundary(at(12, 0, 0, 250), 250)), '2025-01-01T12:00:00.500Z');
  assert.equal(iso(nextBoundary(at(12, 0, 0, 999), 100)), '2025-01-01T12:00:01.000Z');
});

// ---------------------------------------------------------------- everyBoundary

test('everyBoundary does not tick before the first boundary', (t) => {
  const { ticks } = minuteSchedule(t);
  t.mock.timers.tick(22_499);
  assert.deepEqual(ticks, []);
});

test('everyBoundary ticks at :00 of every minute with that boundary', (t) => {
  const { ticks } = minuteSchedule(t);
  t.mock.timers.tick(22_500);
  t.mock.timers.tick(60_000);
  t.mock.timers.tick(60_000);
  assert.deepEqual(ticks, ['2025-01-01T12:01:00.000Z', '2025-01-01T12:02:00.000Z', '2025-01-01T12:03:00.000Z']);
});

test('everyBoundary ticks no more once stopped', (t) => {
  const { ticks, stop } = minuteSchedule(t);
  t.mock.timers.tick(22_500);
  stop();
  minutes(t, 5);
  assert.deepEqual(ticks, ['2025-01-01T12:01:00.000Z']);
});

test('everyBoundary can be stopped from inside its own tick', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: at(12, 0, 37, 500) });
  const ticks: number[] = [];
  const stop = everyBoundary(60_000, (boundary) => {
    ticks.push(boundary);
    stop();
  });
  minutes(t, 5);
  assert.deepEqual(ticks, [at(12, 1)]);
});

test('everyBoundary keeps the next tick on its boundary after a timer fired late', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: at(12, 0, 37, 500) });
  const firedAt: string[] = [];
  const stop = everyBoundary(60_000, () => firedAt.push(iso(Date.now())));
  t.after(stop);
  t.mock.timers.setTime(at(12, 1, 0, 400));
  t.mock.timers.tick(0);
  t.mock.timers.tick(59_600);
  assert.deepEqual(firedAt, ['2025-01-01T12:01:00.400Z', '2025-01-01T12:02:00.000Z']);
});

test('everyBoundary does not replay the boundaries a forward clock jump skipped over', (t) => {
  const { ticks } = minuteSchedule(t);
  t.mock.timers.tick(22_500);
  t.mock.timers.setTime(at(12, 5, 37, 500));
  t.mock.timers.tick(0);
  // The timer pending across the jump fires once, labelled with the latest boundary passed (12:05);
  // 12:02-12:04 are never replayed.
  t.mock.timers.tick(22_500);
  t.mock.timers.tick(60_000);
  assert.deepEqual(ticks, ['2025-01-01T12:01:00.000Z', '2025-01-01T12:05:00.000Z', '2025-01-01T12:06:00.000Z', '2025-01-01T12:07:00.000Z']);
});
