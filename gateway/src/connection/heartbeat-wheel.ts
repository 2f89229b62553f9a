// Open connections, bucketed for the heartbeat. One shared timer pings one bucket per tick, so
// each connection is pinged once per interval while a tick touches only ~1/slices of them: a
// ping is a write syscall per socket and each pong a read, and doing 10,000 of either in one
// tick stalls every event delivery behind them (the benchmark's many-dialogs p99 showed it).

/** Target time between heartbeat ticks; the interval is cut into this many-ms slices. */
export const HEARTBEAT_TICK_MS = 100;
/** Upper bound on slices, so very long intervals do not mean thousands of tiny buckets. */
export const MAX_HEARTBEAT_SLICES = 600;

/** How many slices a heartbeat interval is cut into (one tick per slice, ≥ 1). */
export function heartbeatSlices(heartbeatMs: number): number {
  return Math.min(MAX_HEARTBEAT_SLICES, Math.max(1, Math.round(heartbeatMs / HEARTBEAT_TICK_MS)));
}

/** The set of open connections, split into `slices` buckets by connection id. */
export class HeartbeatWheel<T extends { readonly id: number }> implements Iterable<T> {
  readonly #buckets: Set<T>[];
  #next = 0;
  #size = 0;

  /** Creates an empty wheel with `slices` buckets (see heartbeatSlices). */
  constructor(readonly slices: number) {
    if (!Number.isSafeInteger(slices) || slices < 1) throw new RangeError(`HeartbeatWheel: slices must be a positive integer, got ${slices}`);
    this.#buckets = Array.from({ length: slices }, () => new Set<T>());
  }

  /** Adds a connection to its bucket. */
  add(conn: T): void {
    const bucket = this.#buckets[conn.id % this.slices]!;
    if (bucket.has(conn)) return;
    bucket.add(conn);
    this.#size += 1;
  }

  /** Removes a connection; true when it was present. */
  delete(conn: T): boolean {
    if (!this.#buckets[conn.id % this.slices]!.delete(conn)) return false;
    this.#size -= 1;
    return true;
  }

  /** Open connections. */
  get size(): number {
    return this.#size;
  }

  /** The bucket whose turn it is; after `slices` calls every connection was returned once. */
  nextSlice(): readonly T[] {
    const bucket = this.#buckets[this.#next]!;
    this.#next = (this.#next + 1) % this.slices;
    // A copy: the caller may terminate connections, which removes them from the bucket.
    return [...bucket];
  }

  /** Every open connection. */
  *[Symbol.iterator](): Iterator<T> {
    for (const bucket of this.#buckets) yield* bucket;
  }
}
