// The revoked site token ids, held in memory so a site handshake costs no extra database round
// trip: the list (revoked and not yet expired, so it stays small) is re-read by every
// re-authorization sweep, and by a handshake only when no sweep refreshed it for longer than
// `maxAgeMs`. A token revoked between two reads can open a connection, which the next sweep
// closes: the bound is REAUTH_INTERVAL_MS either way.

/** An in-memory copy of `replyx_revoked_site_tokens`, refreshed at most every `maxAgeMs`. */
export class RevokedSiteTokens {
  readonly #load: () => Promise<readonly string[]>;
  readonly #maxAgeMs: number;
  #revoked: ReadonlySet<string> = new Set();
  #loadedAt = Number.NEGATIVE_INFINITY;
  #inflight: Promise<void> | undefined;

  /** `load` reads every revoked id; the copy is trusted for `maxAgeMs`. */
  constructor(load: () => Promise<readonly string[]>, maxAgeMs: number) {
    this.#load = load;
    this.#maxAgeMs = maxAgeMs;
  }

  /** Re-reads the list (concurrent calls share one read); rejects on database errors. */
  refresh(): Promise<void> {
    this.#inflight ??= this.#load()
      .then((ids) => {
        this.#revoked = new Set(ids);
        this.#loadedAt = Date.now();
      })
      .finally(() => {
        this.#inflight = undefined;
      });
    return this.#inflight;
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
