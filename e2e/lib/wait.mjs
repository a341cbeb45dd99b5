// Waiting on conditions with deadlines: tests never sleep to synchronize.

import { setTimeout as sleep } from 'node:timers/promises';

export { sleep };

/** Thrown by a check to end the wait at once: waiting longer cannot help. */
export class StopWaiting extends Error {}

/**
 * Calls `check` every `interval` ms until it returns a truthy value, and resolves with it.
 * Rejects after `timeout` ms, naming `what` and the last value or error seen. An error thrown
 * by `check` is remembered and retried, unless it is a StopWaiting.
 */
export async function waitFor(check, { timeout = 30_000, interval = 250, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (err) {
      if (err instanceof StopWaiting) throw err;
      last = err;
    }
    if (Date.now() >= deadline) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last seen: ${seen}`);
    }
    await sleep(interval);
  }
}
