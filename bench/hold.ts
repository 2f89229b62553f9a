import type { HeartbeatCounts } from './load/messages.js';

// (f) idle connections held on one gateway process through its heartbeats: the pure parts
// (how many the process can hold, where each client connects from, what the counts mean), so
// the harness only does I/O and tests can check the rules offline.

/**
 * Descriptors left free below the gateway's open-file limit: Redis, Postgres, the listening
 * socket, log files and the handshakes in flight need some, and a process at its limit fails
 * accepts (EMFILE) instead of holding connections.
 */
export const HOLD_FD_HEADROOM = 1000;

/** First loopback source address the clients connect from; the others follow it (127.77.0.1, .2, ...). */
const HOLD_SOURCE_BASE = [127, 77, 0, 1] as const;

/** The soft "Max open files" of /proc/<pid>/limits, or undefined when unlimited or absent. */
export function parseOpenFileLimit(limits: string): number | undefined {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  if (!m || m[1] === 'unlimited') return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** How many connections a run asks one gateway process to hold, given its open-file limit. */
export interface HoldPlan {
  readonly requested: number;
  /** The gateway's soft RLIMIT_NOFILE (undefined: unlimited). */
  readonly openFileLimit: number | undefined;
  /** What the run opens: the request, or the limit minus headroom when that is smaller. */
  readonly target: number;
  /** Set when `target < requested`: why, in one sentence for the report. */
  readonly limitedBy?: string;
}

/** Plans the hold: the requested count, capped to what the process's open-file limit allows. */
export function planHold(requested: number, openFileLimit: number | undefined): HoldPlan {
  const capacity = openFileLimit === undefined ? Number.POSITIVE_INFINITY : Math.max(0, openFileLimit - HOLD_FD_HEADROOM);
  if (requested <= capacity) return { requested, openFileLimit, target: requested };
  return {
    requested,
    openFileLimit,
    target: capacity,
    limitedBy: `the gateway process's open-file limit is ${openFileLimit!.toLocaleString('en-US')} (one descriptor per socket; the hard limit on this machine cannot be raised), so ${requested.toLocaleString('en-US')} connections on one process were not measurable here; the run held ${capacity.toLocaleString('en-US')} (the limit minus ${HOLD_FD_HEADROOM.toLocaleString('en-US')} descriptors of headroom)`,
  };
}

/** The `i`-th loopback source address (`127.77.0.1` upward); `count` must stay under 65,000. */
export function holdSourceAddress(i: number, count: number): string {
  const n = (HOLD_SOURCE_BASE[2] * 256 + HOLD_SOURCE_BASE[3]) + (i % count);
  return `${HOLD_SOURCE_BASE[0]}.${HOLD_SOURCE_BASE[1]}.${Math.floor(n / 256)}.${n % 256}`;
}

/** Pings every held connection must have had in `seconds` with a heartbeat every `heartbeatMs`. */
export function pingsExpected(seconds: number, heartbeatMs: number): number {
  return Math.floor((seconds * 1000) / heartbeatMs);
}

/** Heartbeat figures over every generator: open connections, the fewest pings one got, how many got fewer than `expected`. */
export function summarizeHeartbeats(counts: readonly HeartbeatCounts[], expected: number): { open: number; pingsMin: number; underPinged: number; dropped: number } {
  let open = 0;
  let pingsMin = Number.POSITIVE_INFINITY;
  let underPinged = 0;
  for (const c of counts) {
    for (const [pings, n] of Object.entries(c.connectionsByPings)) {
      open += n;
      pingsMin = Math.min(pingsMin, Number(pings));
      if (Number(pings) < expected) underPinged += n;
    }
  }
  return { open, pingsMin: open === 0 ? 0 : pingsMin, underPinged, dropped: counts.reduce((a, c) => a + c.dropped, 0) };
}
