import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { SignJWT } from 'jose';
import { freePort } from '../../infra/targets/local/ports.js';
import { startPostgres, startRedis, type ServiceProcess } from '../../infra/targets/local/processes.js';

// Redis and Postgres for a benchmark run. Our gateway authorises every connection against the
// `replyx_dialog_access` view, so the run seeds one user, one assistant and N dialogs behind it;
// the peers ignore Postgres (they have no auth) and use Redis only where they publish through it.

/** The allowed domain of the bench assistant; widget connections send it as their Origin. */
export const BENCH_ORIGIN = 'https://bench.example.com';
/** Ids of the seeded owner and assistant. */
export const BENCH_USER_ID = 1;
export const BENCH_ASSISTANT_ID = 1;

/** Running backing services and the secrets our gateway is started with. */
export interface Backing {
  readonly redisUrl: string;
  /** Undefined when no system needs Postgres. */
  readonly databaseUrl?: string;
  readonly jwtSecret: string;
  readonly publishKey: string;
  /** Admin JWT (`sub` = the bench user, 2 h lifetime) for `/ws/dialogs/{id}?token=`. */
  readonly adminToken: string;
  /** Redis and Postgres versions, for the report. */
  readonly versions: Readonly<Record<string, string>>;
  stop(): Promise<void>;
}

/** Options for `startBacking`. */
export interface BackingOptions {
  /** Scratch directory (data dirs, logs). */
  readonly dir: string;
  /** Start Postgres and seed dialogs (needed by our gateway only). */
  readonly postgres: boolean;
  /** Dialogs 1..N to seed. */
  readonly dialogs: number;
  /** Use this Redis instead of starting one (tests pass their own). */
  readonly redisUrl?: string;
  /** Use this (empty) database instead of starting Postgres. */
  readonly databaseUrl?: string;
}

const SCHEMA = [
  'CREATE TABLE IF NOT EXISTS bench_assistants (id bigint PRIMARY KEY, user_id bigint NOT NULL, allowed_domains text[] NOT NULL)',
  'CREATE TABLE IF NOT EXISTS bench_dialogs (id bigint PRIMARY KEY, assistant_id bigint NOT NULL REFERENCES bench_assistants (id))',
  // The gateway's contract: it reads only this view, whatever the user's schema looks like.
  `CREATE OR REPLACE VIEW replyx_dialog_access AS
     SELECT d.id AS dialog_id, a.id AS assistant_id, a.user_id, a.allowed_domains
     FROM bench_dialogs d JOIN bench_assistants a ON a.id = d.assistant_id`,
];

async function seed(databaseUrl: string, dialogs: number): Promise<string> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    for (const statement of SCHEMA) await client.query(statement);
    await client.query('INSERT INTO bench_assistants VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING', [BENCH_ASSISTANT_ID, BENCH_USER_ID, [new URL(BENCH_ORIGIN).hostname]]);
    await client.query('INSERT INTO bench_dialogs SELECT g, $1 FROM generate_series(1, $2::int) g ON CONFLICT (id) DO NOTHING', [BENCH_ASSISTANT_ID, dialogs]);
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    return rows[0]?.server_version ?? 'unknown';
  } finally {
    await client.end();
  }
}

async function redisVersion(redisUrl: string): Promise<string> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisUrl);
  try {
    const info = await redis.info('server');
    return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  } finally {
    redis.disconnect();
  }
}

/** Starts (or adopts) Redis and Postgres, seeds the dialogs and mints the tokens. */
export async function startBacking(opts: BackingOptions): Promise<Backing> {
  const started: ServiceProcess[] = [];
  try {
    let redisUrl = opts.redisUrl;
    if (!redisUrl) {
      const redis = await startRedis({ dir: path.join(opts.dir, 'redis'), port: await freePort(), maxmemoryMb: 512 });
      started.push(redis);
      redisUrl = `redis://127.0.0.1:${redis.port}`;
    }
    let databaseUrl = opts.databaseUrl;
    if (opts.postgres && !databaseUrl) {
      const postgres = await startPostgres({ dir: path.join(opts.dir, 'postgres'), port: await freePort(), database: 'replyx_bench' });
      started.push(postgres);
      databaseUrl = postgres.url;
    }
    const versions: Record<string, string> = { redis: await redisVersion(redisUrl) };
    if (opts.postgres && databaseUrl) versions.postgres = await seed(databaseUrl, opts.dialogs);
    const jwtSecret = randomBytes(32).toString('hex');
    const adminToken = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(String(BENCH_USER_ID))
      .setExpirationTime('2h')
      .sign(new TextEncoder().encode(jwtSecret));
    return {
      redisUrl,
      databaseUrl: opts.postgres ? databaseUrl : undefined,
      jwtSecret,
      publishKey: randomBytes(24).toString('hex'),
      adminToken,
      versions,
      async stop() {
        await Promise.all(started.map((s) => s.stop()));
      },
    };
  } catch (err) {
    await Promise.all(started.map((s) => s.stop()));
    throw err;
  }
}
