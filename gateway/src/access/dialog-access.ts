import pg from 'pg';

// Who may attach to a dialog, read from the `replyx_dialog_access` view (gateway/sql/
// dialog_access.sql). The gateway reads nothing else, so users map their own schema by
// defining that view. Lookups are cached briefly (reconnect storms hit the same dialogs),
// misses included, and concurrent lookups of one dialog share one query.

/** One row of `replyx_dialog_access`. */
export interface DialogAccess {
  readonly dialogId: number;
  readonly assistantId: number;
  readonly userId: number;
  readonly allowedDomains: readonly string[];
}

/** Cache and pool limits (defaults and ranges in config.ts). */
export interface DialogAccessOptions {
  /** How long a row (or its absence) is trusted; 0 disables the cache (ACCESS_CACHE_TTL_MS). */
  readonly cacheTtlMs: number;
  /** Most dialogs kept in the cache; the oldest entry goes first (ACCESS_CACHE_MAX). */
  readonly cacheMax: number;
  /** Postgres connections (DATABASE_POOL_SIZE). */
  readonly poolSize: number;
  /** Connect and per-query timeout (DATABASE_QUERY_TIMEOUT_MS). */
  readonly queryTimeoutMs: number;
}

/** The lookup query, exported for the docs and the tests. */
export const DIALOG_ACCESS_QUERY =
  'SELECT dialog_id::bigint AS dialog_id, assistant_id::bigint AS assistant_id, user_id::bigint AS user_id, allowed_domains FROM replyx_dialog_access WHERE dialog_id = $1 LIMIT 1';

interface CacheEntry {
  readonly value: DialogAccess | null;
  readonly expiresAt: number;
}

/** Reads dialog ownership from Postgres with a bounded TTL cache. */
export class DialogAccessStore {
  readonly #pool: pg.Pool;
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #cache = new Map<number, CacheEntry>();
  readonly #inflight = new Map<number, Promise<DialogAccess | null>>();

  /** Creates the pool (lazy: no connection until the first query). */
  constructor(databaseUrl: string, options: DialogAccessOptions) {
    this.#ttlMs = options.cacheTtlMs;
    this.#max = options.cacheMax;
    const timeout = options.queryTimeoutMs;
    this.#pool = new pg.Pool({
      connectionString: databaseUrl,
      max: options.poolSize,
      connectionTimeoutMillis: timeout,
      query_timeout: timeout,
      idleTimeoutMillis: 30_000,
      application_name: 'replyx-ws-gateway',
    });
    // An idle client losing its connection must not crash the process; the next query reconnects.
    this.#pool.on('error', () => undefined);
  }

  /** The dialog's access row, or null when the dialog does not exist. Rejects on database errors. */
  async lookup(dialogId: number): Promise<DialogAccess | null> {
    const now = Date.now();
    const hit = this.#cache.get(dialogId);
    if (hit && hit.expiresAt > now) return hit.value;
    const pending = this.#inflight.get(dialogId);
    if (pending) return pending;
    const query = this.#query(dialogId).finally(() => this.#inflight.delete(dialogId));
    this.#inflight.set(dialogId, query);
    return query;
  }

  async #query(dialogId: number): Promise<DialogAccess | null> {
    const { rows } = await this.#pool.query<{ dialog_id: string; assistant_id: string; user_id: string; allowed_domains: string[] | null }>(DIALOG_ACCESS_QUERY, [dialogId]);
    const row = rows[0];
    const value: DialogAccess | null = row
      ? { dialogId: Number(row.dialog_id), assistantId: Number(row.assistant_id), userId: Number(row.user_id), allowedDomains: row.allowed_domains ?? [] }
      : null;
    if (this.#ttlMs > 0 && this.#max > 0) {
      this.#cache.delete(dialogId);
      if (this.#cache.size >= this.#max) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(dialogId, { value, expiresAt: Date.now() + this.#ttlMs });
    }
    return value;
  }

  /** Entries currently cached (for tests and the debug endpoint). */
  get cacheSize(): number {
    return this.#cache.size;
  }

  /** Drops expired cache entries; called from the gateway's shared interval. */
  sweep(now = Date.now()): void {
    for (const [id, entry] of this.#cache) if (entry.expiresAt <= now) this.#cache.delete(id);
  }

  /** Forgets every cached row. */
  clear(): void {
    this.#cache.clear();
  }

  /** True when Postgres answers `SELECT 1` within the timeout. */
  async healthy(): Promise<boolean> {
    try {
      await this.#pool.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  /** Closes the pool. */
  async close(): Promise<void> {
    await this.#pool.end();
  }
}
