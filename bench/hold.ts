import { connectionCapacity, OPEN_FILE_RESERVE, type OpenFileLimits } from '../gateway/src/limits/open-files.js';
import type { HeartbeatCounts } from './load/messages.js';

// (f) idle connections held on one gateway process through its heartbeats: the pure parts
// (how many the process can hold, where each client connects from, what the counts mean), so
// the harness only does I/O and tests can check the rules offline.

/** Descriptors left free below the gateway's open-file limit: the gateway's own reserve. */
export const HOLD_FD_HEADROOM = OPEN_FILE_RESERVE;

/** First loopback source address the clients connect from; the others follow it (127.77.0.1, .2, ...). */
const HOLD_SOURCE_BASE = [127, 77, 0, 1] as const;

/** How many connections a run asks one gateway process to hold, given its open-file limit. */
export interface HoldPlan {
  readonly requested: number;
  /** The gateway's soft RLIMIT_NOFILE, what it can open (undefined: unlimited). */
  readonly openFileLimit: number | undefined;
  /** What the run opens: the request, or the limit minus headroom when that is smaller. */
  readonly target: number;
  /** Set when `target < requested`: why, in one sentence for the report. */
  readonly limitedBy?: string;
}

/** Plans the hold: the requested count, capped to what the process's open-file limits (soft, hard) allow. */
export function planHold(requested: number, limits: OpenFileLimits): HoldPlan {
  // The gateway's own bound: it admits no more than this and closes the rest with 4100.
  const { connections: capacity, limitedByOpenFiles } = connectionCapacity(requested, limits);
  const openFileLimit = limits.soft;
  if (!limitedByOpenFiles) return { requested, openFileLimit, target: requested };
  const n = (x: number) => x.toLocaleString('en-US');
  const why =
    limits.hard !== undefined && openFileLimit! >= limits.hard
      ? 'its hard limit: raising that needs root or CAP_SYS_RESOURCE, which this machine does not give'
      : `raise it with ulimit -n (the hard limit is ${limits.hard === undefined ? 'unlimited' : n(limits.hard)})`;
  return {
    requested,
    openFileLimit,
    target: capacity,
    limitedBy: `the gateway process's open-file limit is ${n(openFileLimit!)} (${why}) and each socket takes one descriptor, so ${n(requested)} connections on one process were not measurable here; the run held ${n(capacity)} (the limit minus ${n(HOLD_FD_HEADROOM)} descriptors of headroom)`,
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
