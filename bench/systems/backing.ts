import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { signAdminToken, signWidgetToken, type TokenPolicy } from '../../gateway/src/auth/tokens.js';
import { TOKEN_DEFAULTS } from '../../gateway/src/auth/token-settings.js';
import { freePort } from '../../infra/targets/local/ports.js';
import { startPostgres, startRedis, type ServiceProcess } from '../../infra/targets/local/processes.js';
import { processTree } from '../proc.js';

// Redis and Postgres for a benchmark run. Our gateway authorises every connection against the
// `replyx_dialog_access` view, so the run seeds one user, one assistant and N dialogs behind it,
// an empty `replyx_revoked_site_tokens`, and mints an admin token and one widget session token
// per dialog; the peers ignore Postgres (they have no auth) and use Redis only where they
// publish through it.

/** The allowed domain of the bench assistant; widget connections send it as their Origin. */
export const BENCH_ORIGIN = 'https://bench.example.com';
/** Ids of the seeded owner and assistant. */
export const BENCH_USER_ID = 1;
export const BENCH_ASSISTANT_ID = 1;
/** Lifetime of the run's tokens: longer than any run, so no connection is closed at expiry. */
export const BENCH_TOKEN_TTL_S = 4 * 3600;
/** The policy the bench gateway is started with (WIDGET_TOKEN_TTL_S raised to the run's tokens). */
export const BENCH_TOKEN_POLICY: TokenPolicy = {
  issuer: TOKEN_DEFAULTS.JWT_ISSUER,
  adminAudience: TOKEN_DEFAULTS.JWT_AUDIENCE,
  adminMaxTtlS: TOKEN_DEFAULTS.ADMIN_TOKEN_MAX_TTL_S,
  siteMaxTtlS: TOKEN_DEFAULTS.SITE_TOKEN_MAX_TTL_S,
  widgetTtlS: BENCH_TOKEN_TTL_S,
};

/** Running backing services and the secrets our gateway is started with. */
export interface Backing {
  readonly redisUrl: string;
  /** Undefined when no system needs Postgres. */
  readonly databaseUrl?: string;
  readonly jwtSecret: string;
  readonly siteTokenSecret: string;
  readonly widgetTokenSecret: string;
  readonly publishKey: string;
  /** Admin JWT (`sub` = the bench user) for `/ws/dialogs/{id}`, sent as the token subprotocol. */
  readonly adminToken: string;
  /** A widget session token per seeded dialog (index = dialog id - 1), for the widget endpoint. */
  readonly widgetTokens: readonly string[];
  /** Redis and Postgres versions, for the report. */
  readonly versions: Readonly<Record<string, string>>;
  /** Pids of the Redis and Postgres processes this run started (Postgres' backends included); none when adopted. */
  pids(): Promise<number[]>;
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
  // The bench issues no site tokens, so nothing is ever revoked.
  'CREATE OR REPLACE VIEW replyx_revoked_site_tokens AS SELECT NULL::text AS jti WHERE false',
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
    const [jwtSecret, siteTokenSecret, widgetTokenSecret] = [0, 1, 2].map(() => randomBytes(32).toString('hex')) as [string, string, string];
    const adminToken = (await signAdminToken(jwtSecret, { userId: BENCH_USER_ID, ttlS: BENCH_TOKEN_TTL_S }, BENCH_TOKEN_POLICY)).token;
    const widgetTokens = await Promise.all(
      Array.from({ length: opts.dialogs }, async (_, i) => (await signWidgetToken(widgetTokenSecret, { dialogId: i + 1, assistantId: BENCH_ASSISTANT_ID, origin: BENCH_ORIGIN }, BENCH_TOKEN_POLICY)).token),
    );
    return {
      redisUrl,
      databaseUrl: opts.postgres ? databaseUrl : undefined,
      jwtSecret,
      siteTokenSecret,
      widgetTokenSecret,
      publishKey: randomBytes(24).toString('hex'),
      adminToken,
      widgetTokens,
      versions,
      pids: async () => (await Promise.all(started.map((s) => processTree(s.pid)))).flat(),
      async stop() {
        await Promise.all(started.map((s) => s.stop()));
      },
    };
  } catch (err) {
    await Promise.all(started.map((s) => s.stop()));
    throw err;
  }
}
