/** The ConfigError a program's loadConfig throws for an env, or a failed assertion if it accepts it. */
import assert from 'node:assert/strict';
import { ConfigError } from '../../lib/runtime.ts';

export type Env = Record<string, string | undefined>;

export function configErrorOf(load: (env: Env) => unknown, env: Env): ConfigError {
  try {
    load(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail(`loadConfig accepted ${JSON.stringify(env)}`);
}
