// The revoked site token ids, held in memory so a site handshake costs no extra database round
// trip: the list (revoked and not yet expired, so it stays small) is re-read by every
// re-authorization sweep, and by a handshake only when no sweep refreshed it for longer than
// `maxAgeMs`. A token revoked between two reads can open a connection, which the next sweep
// closes: the bound is REAUTH_INTERVAL_MS either way. A change signal (access/access-changes.ts)
// calls invalidate(): the next check reads the list again, and a read that was already out when
// the change came no longer counts as fresh (it may predate the change).

/** An in-memory copy of `replyx_revoked_site_tokens`, refreshed at most every `maxAgeMs`. */
export class RevokedSiteTokens {
  readonly #load: () => Promise<readonly string[]>;
  readonly #maxAgeMs: number;
  #revoked: ReadonlySet<string> = new Set();
  #loadedAt = Number.NEGATIVE_INFINITY;
  #inflight: Promise<void> | undefined;
  /** Bumped by invalidate(); a read counts as fresh only when it began under the current one. */
  #generation = 0;
  /** The generation of the read whose list is held (an older read finishing late must not replace it). */
  #heldGeneration = -1;

  /** `load` reads every revoked id; the copy is trusted for `maxAgeMs`. */
  constructor(load: () => Promise<readonly string[]>, maxAgeMs: number) {
    this.#load = load;
    this.#maxAgeMs = maxAgeMs;
  }

  /** Re-reads the list (concurrent calls share one read); rejects on database errors. */
  refresh(): Promise<void> {
    if (this.#inflight) return this.#inflight;
    const generation = this.#generation;
    const read: Promise<void> = this.#load()
      .then((ids) => {
        if (generation < this.#heldGeneration) return;
        this.#revoked = new Set(ids);
        this.#heldGeneration = generation;
        if (generation === this.#generation) this.#loadedAt = Date.now();
      })
      .finally(() => {
        if (this.#inflight === read) this.#inflight = undefined;
      });
    this.#inflight = read;
    return read;
  }

  /** The list changed in the database: the next check or refresh reads it again (a read already out is not shared). */
  invalidate(): void {
    this.#generation += 1;
    this.#loadedAt = Number.NEGATIVE_INFINITY;
    this.#inflight = undefined;
  }

  /** True when `jti` is revoked; reads the list first when the copy is older than `maxAgeMs`. */
  async isRevoked(jti: string): Promise<boolean> {
    if (Date.now() - this.#loadedAt > this.#maxAgeMs) await this.refresh();
    return this.#revoked.has(jti);
  }

  /** True when `jti` is revoked according to the copy in memory (for sweeps that just refreshed it). */
  has(jti: string): boolean {
    return this.#revoked.has(jti);
  }

  /** Revoked ids held. */
  get size(): number {
    return this.#revoked.size;
  }
}
