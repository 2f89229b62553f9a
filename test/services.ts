import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import pg from 'pg';

// Test-side access to the suite's shared Redis and Postgres (started in global-setup.ts).

/** URL of the suite's shared Redis. Use a key prefix or its own DB number per test file. */
export function sharedRedisUrl(): string {
  return inject('redisUrl');
}

/** URL of the suite's shared Postgres (the default database; prefer `createTestDatabase`). */
export function sharedPostgresUrl(): string {
  return inject('postgresUrl');
}

/** Creates a fresh, empty database on the shared Postgres and returns its URL. */
export async function createTestDatabase(prefix = 't'): Promise<string> {
  const base = new URL(sharedPostgresUrl());
  const name = `${prefix}_${randomBytes(6).toString('hex')}`.toLowerCase();
  const client = new pg.Client({ connectionString: base.toString() });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  base.pathname = `/${name}`;
  return base.toString();
}
