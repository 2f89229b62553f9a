import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../../../test/services.js';
import { holdClient } from '../src/store.js';

// A transaction's connection is held while the outbox relay calls Redis. When Postgres drops it
// meanwhile (a restart), pg emits 'error' on the checked-out client: without a listener that
// ends the worker, and every request it holds is cut.

let url: string;
let pool: pg.Pool;

beforeAll(async () => {
  url = await createTestDatabase('hold');
  pool = new pg.Pool({ connectionString: url, max: 2 });
});

afterAll(async () => {
  await pool?.end();
});

describe('holdClient', () => {
  it('survives the server ending a held connection: the next query fails, release discards it, the pool serves again', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => {
      uncaught.push(err);
    };
    process.on('uncaughtException', onUncaught);
    try {
      const held = await holdClient(pool);
      const pid = (await held.client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await admin.end();
      await new Promise((r) => setTimeout(r, 200));
      await expect(held.client.query('SELECT 1')).rejects.toThrow();
      held.release();
      expect(uncaught).toEqual([]);
      expect((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one).toBe(1);
      expect(pool.totalCount).toBe(1);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });

  it('gives a healthy connection back to the pool for reuse', async () => {
    const held = await holdClient(pool);
    const pid = (await held.client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    held.release();
    const again = await holdClient(pool);
    expect((await again.client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid).toBe(pid);
    expect(again.client.listenerCount('error')).toBeGreaterThan(0);
    again.release();
  });
});
