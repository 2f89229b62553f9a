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
