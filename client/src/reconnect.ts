// The reconnect contract (docs/gateway.md, "Close codes"): the range of a close code says what
// a client does, so codes it has never seen are handled too. Pure, so every case is unit-tested.

/** What to do after a close. */
export type CloseClass = 'terminal' | 'soon' | 'backoff';

/** Backoff and jitter settings, in milliseconds. */
export interface ReconnectTiming {
  /** First backoff ceiling; doubles per failed attempt. */
  readonly backoffBaseMs: number;
  /** Largest backoff ceiling. */
  readonly backoffCapMs: number;
  /** Ceiling of the random delay after a 4200-4299 close (gateway draining). */
  readonly soonJitterMs: number;
}

/** Defaults: 1 s doubling to 30 s (full jitter); 0-2 s after a drain, as docs/gateway.md advises. */
export const DEFAULT_TIMING: ReconnectTiming = { backoffBaseMs: 1000, backoffCapMs: 30_000, soonJitterMs: 2000 };

/** 4000-4099 stop; 4200-4299 reconnect soon; everything else (4100-4199, 1001, 1006, 1011, …) backs off. */
export function closeClass(code: number): CloseClass {
  if (code >= 4000 && code <= 4099) return 'terminal';
  if (code >= 4200 && code <= 4299) return 'soon';
  return 'backoff';
}

/**
 * Delay before the next attempt, with full jitter: a uniform draw in [0, ceiling), where the
 * ceiling is `soonJitterMs` for 'soon' and min(cap, base × 2^attempt) for 'backoff'.
 * `attempt` counts failed attempts since the last successful connect (0 for the first).
 */
export function reconnectDelayMs(cls: Exclude<CloseClass, 'terminal'>, attempt: number, timing: ReconnectTiming, random: () => number): number {
  const ceiling = cls === 'soon' ? timing.soonJitterMs : Math.min(timing.backoffCapMs, timing.backoffBaseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
