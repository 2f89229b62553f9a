// Connections by the second their token expires, so the heartbeat timer that already ticks
// every ~100 ms can close expired ones without scanning every connection: a sweep looks only at
// the seconds that passed since the last one. Adding and removing are O(1); the connection
// itself carries nothing but its expiry (the bucket key).

/** Connections bucketed by expiry second (`expiresAt`, epoch seconds; 0 = never, not tracked). */
export class ExpirySchedule<T extends { readonly expiresAt: number }> {
  readonly #buckets = new Map<number, Set<T>>();
  /** Every second up to and including this one has been swept. */
  #sweptUpTo: number;
  #size = 0;

  /** Creates an empty schedule; seconds before `nowMs` count as swept. */
  constructor(nowMs = Date.now()) {
    this.#sweptUpTo = Math.floor(nowMs / 1000) - 1;
  }

  /** Tracks `item` until its expiry; false when that second was already swept (expired: close it now). */
  add(item: T): boolean {
    if (item.expiresAt === 0) return true;
    if (item.expiresAt <= this.#sweptUpTo) return false;
    let bucket = this.#buckets.get(item.expiresAt);
    if (!bucket) {
      bucket = new Set();
      this.#buckets.set(item.expiresAt, bucket);
    }
    if (!bucket.has(item)) {
      bucket.add(item);
      this.#size += 1;
    }
    return true;
  }

  /** Stops tracking `item` (it closed). */
  delete(item: T): void {
    const bucket = this.#buckets.get(item.expiresAt);
    if (!bucket?.delete(item)) return;
    this.#size -= 1;
    if (bucket.size === 0) this.#buckets.delete(item.expiresAt);
  }

  /**
   * Hands every item whose expiry second has begun (`expiresAt <= now`) to `expire`, once, and
   * forgets it. Cost: one map lookup per second elapsed since the last sweep, plus the expired.
   */
  sweep(expire: (item: T) => void, nowMs = Date.now()): void {
    const now = Math.floor(nowMs / 1000);
    // After a long pause (a stalled loop, a test), walking the buckets is cheaper than the seconds.
    const seconds = now - this.#sweptUpTo > this.#buckets.size ? [...this.#buckets.keys()].filter((s) => s <= now) : range(this.#sweptUpTo + 1, now);
    for (const second of seconds) {
      const bucket = this.#buckets.get(second);
      if (!bucket) continue;
      this.#buckets.delete(second);
      this.#size -= bucket.size;
      for (const item of bucket) expire(item);
    }
    if (now > this.#sweptUpTo) this.#sweptUpTo = now;
  }

  /** Items tracked. */
  get size(): number {
    return this.#size;
  }
}

function* range(from: number, to: number): Generator<number> {
  for (let i = from; i <= to; i += 1) yield i;
}
