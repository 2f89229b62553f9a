import pg from 'pg';
import { ignoredDomainReporter, type DomainEntryProblem } from '../origin/allowed-domains.js';

// Who may attach to a dialog, read from the `replyx_dialog_access` view, and which site tokens
// are revoked, from `replyx_revoked_site_tokens` (gateway/sql/dialog_access.sql). The gateway
// reads nothing else, so users map their own schema by defining those two views. Lookups are
// cached briefly (reconnect storms hit the same dialogs), misses included, and concurrent
// lookups of one dialog share one query. The handshakes' cache misses of one event-loop turn, and
// those that arrive while that read is out, are read with one query (up to
// ACCESS_LOOKUP_BATCH_MAX dialogs each): a connect burst of distinct
// dialogs otherwise paid one round trip, and one pool slot, per handshake. During a storm a
// query starts at most once per ACCESS_LOOKUP_WINDOW_MS: misses that come sooner after the
// previous one wait for the rest of the window and go in the next query (a lone handshake after
// a quiet spell is read at once). A storm's queries otherwise held about four dialogs each, and
// per query the pool, the driver and the round trip cost more than the rows. Re-authorization
// reads many dialogs in one query too and refreshes the cache with what it read. The lookup
// query runs as a named prepared statement: Postgres then parses and plans it once per pool
// connection instead of once per handshake (a connect storm meets distinct dialogs, so batches
// are mostly of one, and parse+plan was most of Postgres' CPU per connect). A change signal
// (access/access-changes.ts) drops the affected rows at once; a read that was out when the change
// came is not cached, since it may carry the old row.

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
  /**
   * Most dialogs one handshake lookup query reads: the misses of one event-loop turn are read
   * together, in queries of at most this many dialogs; 1 reads each alone (ACCESS_LOOKUP_BATCH_MAX).
   */
  readonly lookupBatchMax: number;
  /**
   * Least milliseconds between the starts of two handshake lookup queries; misses that arrive
   * sooner wait for the rest of it (ACCESS_LOOKUP_WINDOW_MS). Unset or 0: the next event-loop turn.
   */
  readonly lookupWindowMs?: number;
  /** Postgres connections (DATABASE_POOL_SIZE). */
  readonly poolSize: number;
  /** Connect and per-query timeout (DATABASE_QUERY_TIMEOUT_MS). */
  readonly queryTimeoutMs: number;
  /** Told once per distinct allowed-domains entry that is ignored (unusable, public-suffix wildcard). */
  readonly onIgnoredDomain?: (entry: string, problem: DomainEntryProblem, assistantId: number) => void;
}

const ACCESS_COLUMNS = 'dialog_id::bigint AS dialog_id, assistant_id::bigint AS assistant_id, user_id::bigint AS user_id, allowed_domains';
/** The lookup query of handshakes (the misses of one event-loop turn) and of re-authorization. */
export const DIALOG_ACCESS_MANY_QUERY = `SELECT ${ACCESS_COLUMNS} FROM replyx_dialog_access WHERE dialog_id = ANY($1::bigint[])`;
/** The legacy widget handshake's read of the claimed assistant's domains (any of its dialogs' rows). */
export const ASSISTANT_DOMAINS_QUERY = 'SELECT allowed_domains FROM replyx_dialog_access WHERE assistant_id = $1 LIMIT 1';
/** The revoked site token ids that have not expired yet. */
export const REVOKED_SITE_TOKENS_QUERY = 'SELECT jti::text AS jti FROM replyx_revoked_site_tokens';
/**
 * SQLSTATE 0A000: a prepared statement whose result columns changed under it (the view was
 * replaced with other types); the statement is prepared again under a new name.
 */
const CACHED_PLAN_CHANGED = '0A000';
/** Dialogs per re-authorization query. */
export const ACCESS_BATCH_SIZE = 1000;

type AccessRow = { dialog_id: string; assistant_id: string; user_id: string; allowed_domains: string[] | null };

interface CacheEntry<T = DialogAccess | null> {
  readonly value: T;
  readonly expiresAt: number;
}

/** A handshake lookup waiting for its batch, shared by concurrent lookups of the dialog. */
interface PendingLookup {
  readonly dialogId: number;
  /** The cache generation its read began under (or it was queued under): later lookups share it only while that holds. */
  generation: number;
  readonly promise: Promise<DialogAccess | null>;
  readonly resolve: (value: DialogAccess | null) => void;
  readonly reject: (err: Error) => void;
}

/** Reads dialog ownership from Postgres with a bounded TTL cache. */
export class DialogAccessStore {
  readonly #pool: pg.Pool;
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #cache = new Map<number, CacheEntry>();
  readonly #inflight = new Map<number, PendingLookup>();
  /** Dialogs to read at the end of this event-loop turn, or once the read in flight is done. */
  #queued: PendingLookup[] = [];
  /** True while a handshake read is out (see #readQueued). */
  #reading = false;
  readonly #batchMax: number;
  readonly #windowMs: number;
  /** When the last handshake read started (performance.now()): the next one waits until #windowMs after it. */
  #lastReadAt = Number.NEGATIVE_INFINITY;
  readonly #assistantDomains = new Map<number, CacheEntry<readonly string[] | null>>();
  readonly #checkedDomains: (assistantId: number, domains: readonly string[]) => readonly string[];
  /** Bumped when a replaced view invalidates the prepared lookup (see #queryAccess). */
  #statementGeneration = 0;
  /**
   * Bumped by every invalidation (forget, forgetAssistant, clear): a read that began before a
   * change may carry the old row, so it is not cached and later lookups do not share it.
   */
  #generation = 0;

  /** Creates the pool (lazy: no connection until the first query). */
  constructor(databaseUrl: string, options: DialogAccessOptions) {
    this.#ttlMs = options.cacheTtlMs;
    this.#max = options.cacheMax;
    this.#batchMax = options.lookupBatchMax;
    this.#windowMs = options.lookupWindowMs ?? 0;
    const report = options.onIgnoredDomain;
    this.#checkedDomains = report ? ignoredDomainReporter(report) : (_id, domains) => domains;
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
  lookup(dialogId: number): Promise<DialogAccess | null> {
    const now = Date.now();
    const hit = this.#cache.get(dialogId);
    if (hit && hit.expiresAt > now) return Promise.resolve(hit.value);
    const pending = this.#inflight.get(dialogId);
    if (pending && pending.generation === this.#generation) return pending.promise;
    let resolve!: PendingLookup['resolve'];
    let reject!: PendingLookup['reject'];
    const promise = new Promise<DialogAccess | null>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const lookup: PendingLookup = { dialogId, generation: this.#generation, promise, resolve, reject };
    this.#inflight.set(dialogId, lookup);
    this.#queued.push(lookup);
    if (this.#queued.length === 1 && !this.#reading) this.#scheduleRead();
    return promise;
  }

  /** Reads the queue on the next turn, or once the window since the previous read began has passed. */
  #scheduleRead(): void {
    const wait = this.#lastReadAt + this.#windowMs - performance.now();
    if (wait > 0) setTimeout(this.#readQueued, wait);
    else setImmediate(this.#readQueued);
  }

  /**
   * Reads every dialog queued so far, ACCESS_LOOKUP_BATCH_MAX per query, all at once; misses that
   * arrive while such a read is out, or within the window after it began, wait for both and go in
   * the next one. Handshakes of a storm arrive one per event-loop turn, so batching by turn alone
   * read one dialog per query; waiting lets the storm fill the next query.
   */
  readonly #readQueued = (): void => {
    const queued = this.#queued;
    this.#queued = [];
    if (queued.length === 0) return;
    this.#lastReadAt = performance.now();
    for (const lookup of queued) lookup.generation = this.#generation;
    const reads: Promise<void>[] = [];
    for (let i = 0; i < queued.length; i += this.#batchMax) reads.push(this.#readBatch(queued.slice(i, i + this.#batchMax)));
    this.#reading = true;
    void Promise.allSettled(reads).then(() => {
      this.#reading = false;
      if (this.#queued.length > 0) this.#scheduleRead();
    });
  };

  async #readBatch(lookups: readonly PendingLookup[]): Promise<void> {
    const generation = this.#generation;
    let rows: AccessRow[];
    try {
      rows = await this.#queryAccess(lookups.map((l) => l.dialogId));
    } catch (err) {
      for (const lookup of lookups) this.#settle(lookup, null, err ?? new Error('dialog access query failed'));
      return;
    }
    const found = new Map<number, DialogAccess>();
    // The first row of a dialog wins, as with one row per query before (a view should have one).
    for (const row of rows) if (!found.has(Number(row.dialog_id))) found.set(Number(row.dialog_id), this.#toAccess(row));
    for (const lookup of lookups) {
      const value = found.get(lookup.dialogId) ?? null;
      if (generation === this.#generation) this.#remember(lookup.dialogId, value);
      this.#settle(lookup, value);
    }
  }

  /** The access rows of `ids`, through the prepared statement (prepared again once if the view changed type). */
  async #queryAccess(ids: readonly number[]): Promise<AccessRow[]> {
    try {
      return await this.#queryPrepared(ids);
    } catch (err) {
      if ((err as { code?: string }).code !== CACHED_PLAN_CHANGED) throw err;
      this.#statementGeneration += 1;
      return this.#queryPrepared(ids);
    }
  }

  async #queryPrepared(ids: readonly number[]): Promise<AccessRow[]> {
    const { rows } = await this.#pool.query<AccessRow>({ name: `replyx_dialog_access_${this.#statementGeneration}`, text: DIALOG_ACCESS_MANY_QUERY, values: [ids] });
    return rows;
  }

  #settle(lookup: PendingLookup, value: DialogAccess | null, err?: unknown): void {
    if (this.#inflight.get(lookup.dialogId) === lookup) this.#inflight.delete(lookup.dialogId);
    if (err === undefined) lookup.resolve(value);
    else lookup.reject(err as Error);
  }

  /**
   * The access rows of many dialogs (null for those that no longer exist), read in batches of
   * ACCESS_BATCH_SIZE; the cache is refreshed with them. Rejects on database errors.
   */
  async lookupMany(dialogIds: readonly number[]): Promise<Map<number, DialogAccess | null>> {
    const found = new Map<number, DialogAccess | null>();
    for (let i = 0; i < dialogIds.length; i += ACCESS_BATCH_SIZE) {
      const batch = dialogIds.slice(i, i + ACCESS_BATCH_SIZE);
      const generation = this.#generation;
      const rows = await this.#queryAccess(batch);
      for (const row of rows) found.set(Number(row.dialog_id), this.#toAccess(row));
      for (const id of batch) {
        if (!found.has(id)) found.set(id, null);
        if (generation === this.#generation) this.#remember(id, found.get(id)!);
      }
    }
    return found;
  }

  /**
   * The allowed domains of an assistant, from any of its dialogs' rows (null when it has none);
   * cached like dialog rows. Only the legacy widget handshake needs it.
   */
  async assistantDomains(assistantId: number): Promise<readonly string[] | null> {
    const now = Date.now();
    const hit = this.#assistantDomains.get(assistantId);
    if (hit && hit.expiresAt > now) return hit.value;
    const generation = this.#generation;
    const { rows } = await this.#pool.query<{ allowed_domains: string[] | null }>(ASSISTANT_DOMAINS_QUERY, [assistantId]);
    const value = rows[0] ? this.#checkedDomains(assistantId, rows[0].allowed_domains ?? []) : null;
    if (this.#ttlMs > 0 && this.#max > 0 && generation === this.#generation) {
      if (this.#assistantDomains.size >= this.#max) this.#assistantDomains.delete(this.#assistantDomains.keys().next().value!);
      this.#assistantDomains.set(assistantId, { value, expiresAt: now + this.#ttlMs });
    }
    return value;
  }

  /** The ids of revoked site tokens (the view lists only those not yet expired). */
  async revokedSiteTokens(): Promise<string[]> {
    const { rows } = await this.#pool.query<{ jti: string }>(REVOKED_SITE_TOKENS_QUERY);
    return rows.map((r) => r.jti);
  }

  #toAccess(row: AccessRow): DialogAccess {
    const assistantId = Number(row.assistant_id);
    return { dialogId: Number(row.dialog_id), assistantId, userId: Number(row.user_id), allowedDomains: this.#checkedDomains(assistantId, row.allowed_domains ?? []) };
  }

  #remember(dialogId: number, value: DialogAccess | null): void {
    if (this.#ttlMs <= 0 || this.#max <= 0) return;
    this.#cache.delete(dialogId);
    if (this.#cache.size >= this.#max) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(dialogId, { value, expiresAt: Date.now() + this.#ttlMs });
  }

  /** Entries currently cached (for tests and the debug endpoint). */
  get cacheSize(): number {
    return this.#cache.size;
  }

  /** Drops expired cache entries; called from the gateway's shared interval. */
  sweep(now = Date.now()): void {
    for (const [id, entry] of this.#cache) if (entry.expiresAt <= now) this.#cache.delete(id);
    for (const [id, entry] of this.#assistantDomains) if (entry.expiresAt <= now) this.#assistantDomains.delete(id);
  }

  /** Forgets every cached row; reads already out are neither cached nor shared. */
  clear(): void {
    this.#generation += 1;
    this.#cache.clear();
    this.#assistantDomains.clear();
  }

  /** Forgets the cached row of one dialog (it moved or was deleted); reads already out are neither cached nor shared. */
  forget(dialogId: number): void {
    this.#generation += 1;
    this.#cache.delete(dialogId);
  }

  /**
   * Forgets the cached rows that name `assistantId` (its owner or allowed domains changed) and its
   * cached domains; reads already out are neither cached nor shared.
   */
  forgetAssistant(assistantId: number): void {
    this.#generation += 1;
    this.#assistantDomains.delete(assistantId);
    for (const [id, entry] of this.#cache) if (entry.value?.assistantId === assistantId) this.#cache.delete(id);
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
