import { mkdir, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { readOpenFileLimits } from '../../../gateway/src/limits/open-files.js';
import { ReplyxError } from '../../errors.js';
import { redisAnswers, redisCommand } from '../../operate/probes.js';
import { findBinary } from '../../processes/run.js';
import { logExcerpt } from '../../processes/log-tail.js';
import { startLogged, type LoggedProcess } from '../../processes/run.js';
import { redisServerArgs } from '../../render/service-env.js';
import { redisSchema } from '../../topology/index.js';
import { isPortOpen, waitUntil } from './ports.js';

// Starts the stack's OS services (Redis, Postgres, nginx) as plain child processes. Used by the
// local stack (`npm start`, detached, pid files) and by tests (attached, torn down after).

/** A service process this module started. */
export interface ServiceProcess {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  readonly logFile: string;
  /** Stops the process (SIGTERM, then SIGKILL after `graceMs`) and waits for it to exit. */
  stop(graceMs?: number): Promise<void>;
}

/** Options every service start takes. */
export interface StartOptions {
  /** Directory for data, config and logs of this service; created if missing. */
  readonly dir: string;
  readonly port: number;
  /** Detached processes outlive the caller (the local stack); attached ones are for tests. */
  readonly detached?: boolean;
  /** How long to wait for the service to become ready. */
  readonly readyTimeoutMs?: number;
}

/** maxmemory of a Redis started without a topology (tests, benchmarks): the schema's default. */
const DEFAULT_REDIS_MAXMEMORY_MB = redisSchema.parse({}).maxmemoryMb;

const isRoot = () => process.getuid?.() === 0;

export { findBinary };

const debianPackage: Record<string, string> = {
  'redis-server': 'redis-server',
  nginx: 'nginx-light',
  postgres: 'postgresql',
  initdb: 'postgresql',
  pg_ctl: 'postgresql',
  prometheus: 'prometheus',
  promtool: 'prometheus',
};

/** Resolves a binary or throws an error naming the Debian package that provides it. */
export function requireBinary(name: string): string {
  const found = findBinary(name);
  if (found) return found;
  const pkg = debianPackage[name] ?? name;
  throw new ReplyxError('RPX_MISSING_PACKAGE', `${name} is not installed`, `install it with: sudo apt-get update && sudo apt-get install -y ${pkg}`);
}

async function spawnService(
  command: string,
  args: readonly string[],
  opts: StartOptions & { logFile: string; uid?: number; gid?: number; env?: NodeJS.ProcessEnv },
): Promise<LoggedProcess> {
  return startLogged([command, ...args], {
    cwd: opts.dir,
    env: opts.env ?? process.env,
    logFile: opts.logFile,
    detached: opts.detached ?? false,
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}),
  });
}

function handleFor(name: string, child: LoggedProcess, port: number, logFile: string): ServiceProcess {
  return {
    name,
    pid: child.pid,
    port,
    logFile,
    async stop(graceMs = 5000) {
      await stopPid(child.pid, graceMs, () => child.exited() !== undefined);
    },
  };
}

/**
 * Sends `signal` (SIGTERM) to `pid`, then SIGKILL after `graceMs`, and waits until it is gone.
 * A stopped (SIGSTOP, hung in a debugger) process is continued first, so it can act on the signal.
 */
export async function stopPid(pid: number, graceMs = 5000, hasExited?: () => boolean, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const alive = () => {
    if (hasExited?.()) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  try {
    // A stopped process keeps a SIGTERM pending and never drains: let it run to handle it.
    process.kill(pid, 'SIGCONT');
    process.kill(pid, signal);
  } catch {
    return;
  }
  if (await waitUntil(async () => !alive(), graceMs, 25)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitUntil(async () => !alive(), 5000, 25);
}

async function failedToStart(name: string, child: LoggedProcess, port: number, logFile: string, laterLog?: string): Promise<never> {
  const exitedByItself = child.exited() !== undefined;
  child.kill('SIGKILL');
  const portTaken = exitedByItself && (await isPortOpen(port));
  // A server that moves its log elsewhere once started (Postgres's JSON log) has the cause there.
  const later = laterLog === undefined ? '' : ` | ${await logExcerpt(laterLog, 4)}`;
  throw new ReplyxError(
    'RPX_SERVICE_START_FAILED',
    `${name} did not become ready on 127.0.0.1:${port}${portTaken ? ' (the port is taken by another process)' : ''}; log: ${await logExcerpt(logFile)}${later}`,
    portTaken ? `free port ${port} or choose another in the stack file` : `read ${laterLog ?? logFile} for the cause`,
  );
}

/** The redis-server arguments (pure): the rendered server settings, 127.0.0.1 only, no persistence. */
export function redisArgs(opts: { dir: string; port: number; maxmemoryMb?: number; aclFile?: string }): string[] {
  return [
    ...redisServerArgs({ port: opts.port, maxmemoryMb: opts.maxmemoryMb ?? DEFAULT_REDIS_MAXMEMORY_MB }),
    // The stack's users (infra/render/redis-acl.ts); without a file, the default user has no password (tests, benchmarks).
    ...(opts.aclFile !== undefined ? ['--aclfile', opts.aclFile] : []),
    '--bind', '127.0.0.1',
    '--dir', opts.dir,
    '--save', '',
    '--appendonly', 'no',
    '--protected-mode', 'yes',
    '--daemonize', 'no',
  ];
}

/** Starts redis-server bound to 127.0.0.1 with no persistence, ready when it answers PING. */
export async function startRedis(opts: StartOptions & { maxmemoryMb?: number; aclFile?: string }): Promise<ServiceProcess> {
  const bin = requireBinary('redis-server');
  await mkdir(opts.dir, { recursive: true });
  const logFile = path.join(opts.dir, 'redis.log');
  const args = redisArgs(opts);
  const child = await spawnService(bin, args, { ...opts, logFile });
  const ready = await waitUntil(async () => redisAnswers(await redisCommand(opts.port, 'PING')) && child.exited() === undefined, opts.readyTimeoutMs ?? 10_000);
  if (!ready) return failedToStart('redis', child, opts.port, logFile);
  return handleFor('redis', child, opts.port, logFile);
}

/** Connection settings for a Postgres started by `startPostgres`. */
export interface PostgresProcess extends ServiceProcess {
  readonly user: string;
  readonly database: string;
  /** `postgres://user@127.0.0.1:port/database` (trust auth on loopback). */
  readonly url: string;
}

function postgresIds(): { uid: number; gid: number } | undefined {
  if (!isRoot()) return undefined;
  try {
    const uid = Number(execaSync('id', ['-u', 'postgres']).stdout.trim());
    const gid = Number(execaSync('id', ['-g', 'postgres']).stdout.trim());
    return { uid, gid };
  } catch {
    throw new ReplyxError('RPX_POSTGRES_USER', 'running as root but there is no "postgres" user to run Postgres as', 'install Postgres from Debian (apt-get install -y postgresql), which creates the user');
  }
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await execa('chown', ['-R', `${uid}:${gid}`, dir]);
}

/** Postgres's JSON log (one object per line) of a server started in `dir`. */
export function postgresJsonLog(dir: string): string {
  return path.join(dir, 'log', 'postgresql.json');
}

/**
 * The postgres server arguments (pure): data in `dir/data`, socket in `dir/run`, loopback only,
 * and the log as JSON lines in postgresJsonLog(dir) (its stderr keeps only the first start-up lines).
 */
export function postgresArgs(opts: { dir: string; port: number }): string[] {
  return [
    '-D', path.join(opts.dir, 'data'),
    '-p', String(opts.port),
    '-c', 'listen_addresses=127.0.0.1',
    '-c', `unix_socket_directories=${path.join(opts.dir, 'run')}`,
    '-c', 'fsync=off',
    '-c', 'max_connections=200',
    '-c', 'shared_buffers=64MB',
    '-c', 'logging_collector=on',
    '-c', 'log_destination=jsonlog',
    '-c', `log_directory=${path.dirname(postgresJsonLog(opts.dir))}`,
    // jsonlog swaps the .log suffix for .json: the file is postgresql.json.
    '-c', 'log_filename=postgresql.log',
    '-c', 'log_rotation_age=0',
  ];
}

/** The prometheus server arguments (pure): config and data under `dir`, loopback only, JSON logs. */
export function prometheusArgs(opts: { dir: string; configFile: string; port: number; retentionHours: number }): string[] {
  return [
    `--config.file=${opts.configFile}`,
    `--storage.tsdb.path=${path.join(opts.dir, 'data')}`,
    `--storage.tsdb.retention.time=${opts.retentionHours}h`,
    `--web.listen-address=127.0.0.1:${opts.port}`,
    '--log.format=json',
  ];
}

/**
 * Starts Postgres on 127.0.0.1:port with its data in `dir/data` (initdb on first use). When
 * the caller is root it runs as the `postgres` user, which Postgres requires.
 */
export async function startPostgres(opts: StartOptions & { user?: string; database?: string }): Promise<PostgresProcess> {
  const initdb = requireBinary('initdb');
  const postgres = requireBinary('postgres');
  const user = opts.user ?? 'replyx';
  const database = opts.database ?? 'replyx';
  const ids = postgresIds();
  await mkdir(opts.dir, { recursive: true });
  const dataDir = path.join(opts.dir, 'data');
  const socketDir = path.join(opts.dir, 'run');
  await mkdir(socketDir, { recursive: true });
  if (ids) {
    await chownTree(opts.dir, ids.uid, ids.gid);
    // The postgres user must be able to reach its directory through every parent.
    for (let d = path.dirname(opts.dir); d !== path.dirname(d); d = path.dirname(d)) {
      const st = await stat(d);
      if ((st.mode & 0o001) === 0) {
        throw new ReplyxError('RPX_POSTGRES_DIR', `${d} is not traversable by the postgres user`, `chmod o+x ${d} or use a state directory under /tmp`);
      }
    }
  }
  const logFile = path.join(opts.dir, 'postgres.log');
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    try {
      // Async so other services starting in parallel keep being probed while initdb runs.
      await execa(initdb, ['-D', dataDir, '-U', user, '--auth=trust', '--encoding=UTF8', '--no-instructions'], {
        ...(ids ? { uid: ids.uid, gid: ids.gid } : {}),
        env: { LC_ALL: 'C.UTF-8' },
      });
    } catch (err) {
      const stderr = (err as { stderr?: Buffer | string }).stderr?.toString().trim().split('\n').slice(-3).join(' | ');
      throw new ReplyxError('RPX_SERVICE_START_FAILED', `initdb failed: ${stderr ?? (err as Error).message}`, `remove ${dataDir} and try again`);
    }
  }
  const args = postgresArgs({ dir: opts.dir, port: opts.port });
  const child = await spawnService(postgres, args, { ...opts, logFile, uid: ids?.uid, gid: ids?.gid, env: { ...process.env, LC_ALL: 'C.UTF-8' } });
  const pg = await import('pg');
  const canQuery = async (db: string) => {
    const client = new pg.default.Client({ host: '127.0.0.1', port: opts.port, user, database: db, connectionTimeoutMillis: 1000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  const ready = await waitUntil(async () => child.exited() === undefined && (await canQuery('postgres')), opts.readyTimeoutMs ?? 30_000, 100);
  if (!ready) return failedToStart('postgres', child, opts.port, logFile, postgresJsonLog(opts.dir));
  const admin = new pg.default.Client({ host: '127.0.0.1', port: opts.port, user, database: 'postgres' });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${database.replaceAll('"', '')}"`);
  } finally {
    await admin.end();
  }
  const handle = handleFor('postgres', child, opts.port, logFile);
  return { ...handle, user, database, url: `postgres://${user}@127.0.0.1:${opts.port}/${database}` };
}

/** Runs `nginx -t` on a config file; resolves with nginx's output or throws with it. */
export async function testNginxConfig(configFile: string, prefixDir: string): Promise<string> {
  const bin = requireBinary('nginx');
  await mkdir(path.join(prefixDir, 'logs'), { recursive: true });
  const r = await execa(bin, ['-t', '-q', '-p', prefixDir, '-c', configFile], { reject: false, stdin: 'ignore', all: true });
  const out = String(r.all ?? '');
  if (r.exitCode !== 0) throw new ReplyxError('RPX_NGINX_CONFIG_INVALID', `nginx -t rejected ${configFile}: ${out.trim()}`, 'fix the topology or template that produced this config');
  return out;
}

/** The nginx arguments (pure): prefix `dir`, the given config, in the foreground. */
export function nginxArgs(opts: { dir: string; configFile: string }): string[] {
  return ['-p', opts.dir, '-c', opts.configFile, '-g', 'daemon off;'];
}

/**
 * The hard open-file limit an nginx started from this process gets (it inherits ours, and only
 * CAP_SYS_RESOURCE could raise it); undefined when unlimited or unknown (no /proc).
 */
export function nginxOpenFileLimit(): number | undefined {
  return readOpenFileLimits()?.hard;
}

/** Starts nginx in the foreground (`daemon off`) with `prefixDir` as its prefix. */
export async function startNginx(opts: StartOptions & { configFile: string }): Promise<ServiceProcess> {
  const bin = requireBinary('nginx');
  await mkdir(path.join(opts.dir, 'logs'), { recursive: true });
  await testNginxConfig(opts.configFile, opts.dir);
  const logFile = path.join(opts.dir, 'logs', 'nginx.stderr.log');
  const child = await spawnService(bin, nginxArgs(opts), { ...opts, logFile });
  const ready = await waitUntil(async () => child.exited() === undefined && (await isPortOpen(opts.port)), opts.readyTimeoutMs ?? 10_000);
  if (!ready) return failedToStart('nginx', child, opts.port, logFile);
  return handleFor('nginx', child, opts.port, logFile);
}
