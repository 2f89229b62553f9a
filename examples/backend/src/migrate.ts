import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

// Versioned SQL migrations (`NNN_name.sql`) tracked in `schema_migrations`. All pending files
// run in one transaction under an advisory lock, so two starting backends cannot race and a
// failing file leaves the schema as it was.

/** Directory holding the backend's migration files. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations/', import.meta.url));

/** The gateway's database role (migration 005): SELECT on the two access views, nothing else. */
export const GATEWAY_DATABASE_ROLE = 'replyx_gateway';

/**
 * Lets the gateway's role log in with `password` (the backend owns the schema and its roles).
 * The literal is escaped by the driver: ALTER ROLE takes no bind parameters.
 */
export async function setGatewayRolePassword(client: pg.ClientBase, password: string): Promise<void> {
  await client.query(`ALTER ROLE ${client.escapeIdentifier(GATEWAY_DATABASE_ROLE)} WITH LOGIN PASSWORD ${client.escapeLiteral(password)}`);
}

/** Arbitrary constant key for pg_advisory_xact_lock; shared by every replyx backend. */
export const MIGRATION_LOCK_KEY = 72_110_001;

/** One migration file. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

const FILE_NAME = /^(\d{3,})_([a-z0-9_]+)\.sql$/;

/** Orders migration file names by version; throws on malformed or duplicate versions. */
export function parseMigrationNames(files: readonly string[]): { version: number; name: string; file: string }[] {
  const seen = new Map<number, string>();
  const out: { version: number; name: string; file: string }[] = [];
  for (const file of files) {
    if (!file.endsWith('.sql')) continue;
    const m = FILE_NAME.exec(file);
    if (!m) throw new Error(`migration file ${file} must be named NNN_name.sql`);
    const version = Number(m[1]);
    const other = seen.get(version);
    if (other) throw new Error(`migrations ${other} and ${file} share version ${version}`);
    seen.set(version, file);
    out.push({ version, name: m[2]!, file });
  }
  return out.sort((a, b) => a.version - b.version);
}

/** Reads every migration in `dir`, ordered by version. */
export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = parseMigrationNames(await readdir(dir));
  return Promise.all(files.map(async (f) => ({ version: f.version, name: f.name, sql: await readFile(path.join(dir, f.file), 'utf8') })));
}

/** Applies the pending migrations; resolves with the versions it applied (empty when up to date). */
export async function migrate(client: pg.ClientBase, migrations: readonly Migration[]): Promise<number[]> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    const applied: number[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      try {
        await client.query(m.sql);
      } catch (err) {
        throw new Error(`migration ${m.version}_${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
