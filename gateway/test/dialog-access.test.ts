import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { freePort } from '../../infra/targets/local/ports.js';
import { DialogAccessStore, type DialogAccessOptions } from '../src/access/dialog-access.js';
import { createAccessDatabase, type AccessDatabase } from './harness.js';

// Handshake lookups against a real Postgres: the cache misses of one event-loop turn are read
// with one query per ACCESS_LOOKUP_BATCH_MAX dialogs, each caller gets its own dialog's row (or
// null), a database error reaches every caller of the batch, and a change read by
// re-authorization (lookupMany) replaces the cached row, so no stale grant outlives a sweep.

let db: AccessDatabase;
const stores: DialogAccessStore[] = [];
const OPTIONS: DialogAccessOptions = { cacheTtlMs: 60_000, cacheMax: 10_000, lookupBatchMax: 500, poolSize: 2, queryTimeoutMs: 3000 };

beforeAll(async () => {
  db = await createAccessDatabase();
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  // 120 more dialogs of tenant a, so a burst has distinct dialogs to read.
  await client.query('INSERT INTO dialogs (id, assistant_id) SELECT g, $1 FROM generate_series($2::bigint, $2::bigint + 119) g', [db.a.assistantId, db.a.dialogs[0]! + 1000]);
  await client.end();
});

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(async () => {
  await Promise.allSettled(stores.map((s) => s.close()));
});

function store(overrides: Partial<DialogAccessOptions> = {}, url = db.url): DialogAccessStore {
  const s = new DialogAccessStore(url, { ...OPTIONS, ...overrides });
  stores.push(s);
  return s;
}

const burst = () => Array.from({ length: 120 }, (_, i) => db.a.dialogs[0]! + 1000 + i);

describe('DialogAccessStore.lookup', () => {
  it('reads the misses of one turn with one query per ACCESS_LOOKUP_BATCH_MAX dialogs, each caller getting its own row', async () => {
    const s = store({ lookupBatchMax: 50 });
    const queries = vi.spyOn(pg.Pool.prototype, 'query');
    const ids = [...burst(), db.b.dialogs[0]!, 999_999_999];
    // A dialog asked twice in the burst shares one read.
    const rows = await Promise.all([...ids, ids[0]!].map((id) => s.lookup(id)));
    expect(queries).toHaveBeenCalledTimes(Math.ceil(ids.length / 50));
    expect(rows.slice(0, 120).every((r, i) => r?.dialogId === ids[i] && r?.userId === db.a.userId && r?.assistantId === db.a.assistantId)).toBe(true);
    expect(rows[120]).toMatchObject({ dialogId: db.b.dialogs[0], userId: db.b.userId, assistantId: db.b.assistantId, allowedDomains: db.b.domains });
    expect(rows[121]).toBeNull();
    expect(rows[122]).toEqual(rows[0]);
    // Cached now, misses included: no further query.
    await Promise.all(ids.map((id) => s.lookup(id)));
    expect(queries).toHaveBeenCalledTimes(Math.ceil(ids.length / 50));
  });

  it('with ACCESS_LOOKUP_BATCH_MAX 1 reads each dialog alone', async () => {
    const s = store({ lookupBatchMax: 1 });
    const queries = vi.spyOn(pg.Pool.prototype, 'query');
    const ids = burst().slice(0, 10);
    await Promise.all(ids.map((id) => s.lookup(id)));
    expect(queries).toHaveBeenCalledTimes(10);
  });

  it('rejects every lookup of the batch when the database is unreachable, and reads again on the next call', async () => {
    const s = store({ queryTimeoutMs: 500 }, `postgres://nobody@127.0.0.1:${await freePort()}/none`);
    const results = await Promise.allSettled([1, 2, 3].map((id) => s.lookup(id)));
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    await expect(s.lookup(1)).rejects.toThrow();
  });

  it('misses that arrive, one per turn, while a read is out wait for it and go in one next query', async () => {
    const s = store({ lookupBatchMax: 50 });
    const ids = burst().slice(20, 30);
    // Hold the read in flight: the view's dialogs table is locked until we let go.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE dialogs IN ACCESS EXCLUSIVE MODE');
    const queries = vi.spyOn(pg.Pool.prototype, 'query');
    const first = s.lookup(ids[0]!);
    await vi.waitFor(() => expect(queries).toHaveBeenCalledTimes(1));
    const rest: Promise<unknown>[] = [];
    for (const id of ids.slice(1)) {
      // One handshake per event-loop turn, as in a storm.
      await new Promise((resolve) => setImmediate(resolve));
      rest.push(s.lookup(id));
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(queries).toHaveBeenCalledTimes(1);
    await locker.query('COMMIT');
    await locker.end();
    const rows = await Promise.all([first, ...rest]);
    expect(queries).toHaveBeenCalledTimes(2);
    expect(rows.map((r) => (r as { dialogId: number } | null)?.dialogId)).toEqual(ids);
  });

  it('misses that arrive one per turn within ACCESS_LOOKUP_WINDOW_MS of the previous read wait for it and go in one query; a lone miss after it goes at once', async () => {
    const windowMs = 300;
    const s = store({ lookupBatchMax: 50, lookupWindowMs: windowMs });
    const ids = burst().slice(60, 70);
    const query = pg.Pool.prototype.query;
    const startedAt: number[] = [];
    vi.spyOn(pg.Pool.prototype, 'query').mockImplementation(function (this: pg.Pool, ...args: unknown[]) {
      startedAt.push(performance.now());
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof query);
    await s.lookup(ids[0]!);
    // The first read is done: without the window each of these would start a query of its own.
    const rest: Promise<unknown>[] = [];
    for (const id of ids.slice(1, -1)) {
      await new Promise((resolve) => setImmediate(resolve));
      rest.push(s.lookup(id));
    }
    const rows = await Promise.all(rest);
    expect(startedAt).toHaveLength(2);
    expect(startedAt[1]! - startedAt[0]!).toBeGreaterThanOrEqual(windowMs - 5);
    expect(rows.map((r) => (r as { dialogId: number } | null)?.dialogId)).toEqual(ids.slice(1, -1));
    // A quiet spell longer than the window: the next miss is not held back.
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    const loneAt = performance.now();
    expect(await s.lookup(ids.at(-1)!)).toMatchObject({ dialogId: ids.at(-1) });
    expect(startedAt).toHaveLength(3);
    expect(startedAt[2]! - loneAt).toBeLessThan(windowMs / 2);
  });

  it('prepares the lookup again when the view is replaced with other column types', async () => {
    const s = store({ cacheTtlMs: 0 });
    const [one, two] = burst().slice(40, 42);
    expect(await s.lookup(one!)).toMatchObject({ dialogId: one, userId: db.a.userId });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      // Same rows, allowed_domains now varchar[]: the statement prepared on the pool's connection no longer fits.
      await client.query(`BEGIN; DROP VIEW replyx_dialog_access;
        CREATE VIEW replyx_dialog_access AS SELECT d.id::bigint AS dialog_id, a.id::bigint AS assistant_id, a.user_id::bigint AS user_id,
          a.allowed_domains::varchar[] AS allowed_domains FROM dialogs d JOIN assistants a ON a.id = d.assistant_id; COMMIT`);
      expect(await s.lookup(two!)).toMatchObject({ dialogId: two, userId: db.a.userId, allowedDomains: db.a.domains });
    } finally {
      await client.query(`BEGIN; DROP VIEW replyx_dialog_access;
        CREATE VIEW replyx_dialog_access AS SELECT d.id::bigint AS dialog_id, a.id::bigint AS assistant_id, a.user_id::bigint AS user_id,
          a.allowed_domains::text[] AS allowed_domains FROM dialogs d JOIN assistants a ON a.id = d.assistant_id; COMMIT`);
      await client.end();
    }
  });

  it('a dialog moved to another owner is seen by the next lookup once re-authorization read it, despite the cache', async () => {
    const s = store();
    const moved = burst()[0]!;
    expect(await s.lookup(moved)).toMatchObject({ userId: db.a.userId });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query('UPDATE dialogs SET assistant_id = $1 WHERE id = $2', [db.b.assistantId, moved]);
    await client.end();
    // Still cached (60 s here), as documented: a sweep is what reads the change.
    expect(await s.lookup(moved)).toMatchObject({ userId: db.a.userId });
    await s.lookupMany([moved]);
    expect(await s.lookup(moved)).toMatchObject({ userId: db.b.userId, assistantId: db.b.assistantId });
  });
});

describe('DialogAccessStore invalidation (what an access change drops)', () => {
  /** Moves `dialog` to `assistantId` through a connection of its own. */
  async function move(dialog: number, assistantId: number): Promise<void> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query('UPDATE dialogs SET assistant_id = $1 WHERE id = $2', [assistantId, dialog]);
    await client.end();
  }

  it('forget(dialog) drops that row only: the next lookup reads the change, the others stay cached', async () => {
    const s = store();
    const [moved, kept] = [burst()[10]!, burst()[11]!];
    await Promise.all([s.lookup(moved), s.lookup(kept)]);
    await move(moved, db.b.assistantId);
    s.forget(moved);
    const queries = vi.spyOn(pg.Pool.prototype, 'query');
    expect(await s.lookup(moved)).toMatchObject({ userId: db.b.userId, assistantId: db.b.assistantId });
    expect(await s.lookup(kept)).toMatchObject({ userId: db.a.userId });
    expect(queries).toHaveBeenCalledTimes(1);
    await move(moved, db.a.assistantId);
  });

  it("forgetAssistant drops every row naming the assistant and its cached domains, and no other assistant's", async () => {
    const s = store();
    const ownRows = [burst()[20]!, burst()[21]!];
    await Promise.all([...ownRows, db.b.dialogs[0]!].map((id) => s.lookup(id)));
    await s.assistantDomains(db.a.assistantId);
    expect(s.cacheSize).toBe(3);
    s.forgetAssistant(db.a.assistantId);
    expect(s.cacheSize).toBe(1);
    const queries = vi.spyOn(pg.Pool.prototype, 'query');
    await s.lookup(db.b.dialogs[0]!);
    expect(queries).toHaveBeenCalledTimes(0);
    await s.assistantDomains(db.a.assistantId);
    expect(queries).toHaveBeenCalledTimes(1);
  });

  it('a read already out when the change comes is neither cached nor shared with later lookups', async () => {
    const s = store();
    const moved = burst()[30]!;
    // A pool connection is open already, so the early read goes out at once.
    await s.lookup(burst()[31]!);
    const early = s.lookup(moved);
    // The read is out (its query sent) before the change is committed and signalled.
    await new Promise((r) => setImmediate(r));
    await move(moved, db.b.assistantId);
    s.forget(moved);
    const late = s.lookup(moved);
    expect(late).not.toBe(early);
    expect(await late).toMatchObject({ userId: db.b.userId });
    await early;
    expect(await s.lookup(moved)).toMatchObject({ userId: db.b.userId });
    await move(moved, db.a.assistantId);
  });
});
