import { chmod, mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { ReplyxError } from '../../errors.js';
import { logExcerpt } from '../../processes/log-tail.js';
import { startLogged } from '../../processes/run.js';
import { READY_LOG_FIELD, type ProcessSpec } from './plan.js';
import { describeOwner, portOwner } from './port-owner.js';
import { isPortOpen, waitUntil } from './ports.js';
import { redisAnswers, redisCommand } from '../../operate/probes.js';
import { requireBinary, startNginx, startPostgres, startRedis, stopPid } from './processes.js';

// The thin process manager: runs one ProcessSpec detached, records its pid, waits for its
// ready probe, stops it, and tells whether it is running and healthy. All policy (ports,
// env, order) is in plan.ts.

/** Observed state of one service. */
export interface ServiceState {
  readonly name: string;
  readonly pid?: number;
  readonly port: number;
  /** The pid file names a live process that is this service. */
  readonly running: boolean;
  /** Its ready probe passes now. */
  readonly healthy: boolean;
}

/** The argv element that identifies a spec's process in /proc/<pid>/cmdline. */
export function processMarker(spec: ProcessSpec): string {
  return spec.argv.find((a) => a.endsWith('.ts') || a.endsWith('.py')) ?? path.basename(spec.argv[0]!);
}

/** True when `pid` is alive and its command line contains `marker` (guards against pid reuse). */
export function pidMatches(pid: number, marker: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return false;
  }
}

/** Reads a pid file; undefined when missing or garbage. */
export async function readPid(file: string): Promise<number | undefined> {
  try {
    const n = Number((await readFile(file, 'utf8')).trim());
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Runs a spec's ready probe once. */
export async function probeReady(spec: ProcessSpec): Promise<boolean> {
  const probe = spec.ready;
  switch (probe.kind) {
    case 'http':
      try {
        const res = await fetch(probe.url, { signal: AbortSignal.timeout(1500) });
        await res.arrayBuffer();
        return res.status === 200;
      } catch {
        return false;
      }
    case 'redis-ping':
      return redisAnswers(await redisCommand(probe.port, 'PING').catch(() => ''));
    case 'postgres': {
      const client = new pg.Client({ host: '127.0.0.1', port: probe.port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 1000 });
      // Any answer (even "role does not exist") proves the server accepts connections.
      try {
        await client.connect();
        return true;
      } catch (err) {
        return typeof (err as { code?: unknown }).code === 'string' && /^[0-9A-Z]{5}$/.test((err as { code: string }).code) && (err as { code: string }).code !== '57P03';
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    case 'tcp':
      return isPortOpen(probe.port);
  }
}

/** The running/healthy state of a spec, from its pid file and probe. */
export async function serviceState(spec: ProcessSpec): Promise<ServiceState> {
  const pid = await readPid(spec.pidFile);
  const running = pid !== undefined && pidMatches(pid, processMarker(spec));
  return { name: spec.name, pid: running ? pid : undefined, port: spec.port, running, healthy: running && (await probeReady(spec)) };
}

/** Throws RPX_PORT_TAKEN naming the holder when something already listens on the spec's port. */
export async function assertPortFree(spec: ProcessSpec): Promise<void> {
  if (!(await isPortOpen(spec.port))) return;
  const owner = portOwner(spec.port);
  throw new ReplyxError(
    'RPX_PORT_TAKEN',
    `port ${spec.port} for ${spec.name} is taken by ${describeOwner(owner)}`,
    `stop that process${owner?.pid ? ` (kill ${owner.pid})` : ''} or give ${spec.name} another port in the stack file`,
  );
}

function childEnv(spec: ProcessSpec): NodeJS.ProcessEnv {
  // A clean environment: the caller's DATABASE_URL or NODE_OPTIONS must not leak into the stack.
  const keep = ['PATH', 'HOME', 'LANG', 'TZ', 'TMPDIR'];
  const env: NodeJS.ProcessEnv = {};
  for (const k of keep) if (process.env[k] !== undefined) env[k] = process.env[k];
  return { ...env, ...spec.env };
}

/** Writes the spec's rendered files, owner-only (the Redis ACL file holds password hashes). */
async function writeSpecFiles(spec: ProcessSpec): Promise<void> {
  for (const file of spec.files ?? []) {
    await mkdir(path.dirname(file.path), { recursive: true });
    await writeFile(file.path, file.content, { mode: 0o600 });
    await chmod(file.path, 0o600);
  }
}

/** True when `text` (JSON log lines) holds the ready line of process `pid` (pure). */
export function hasReadyLine(text: string, pid: number): boolean {
  for (const line of text.split('\n')) {
    if (!line.includes(`"${READY_LOG_FIELD}":true`)) continue;
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry[READY_LOG_FIELD] === true && entry.pid === pid) return true;
    } catch {
      // A partial or foreign line: not the ready line.
    }
  }
  return false;
}

/** Reads what a log file gained since `offset` (the size it had before the start). */
async function logSince(file: string, offset: number): Promise<string> {
  const handle = await open(file, 'r').catch(() => undefined);
  if (!handle) return '';
  try {
    const { size } = await handle.stat();
    if (size <= offset) return '';
    const buf = Buffer.alloc(size - offset);
    await handle.read(buf, 0, buf.length, offset);
    return buf.toString('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * A starting service that is still working (using CPU, writing its log) gets more time, up to
 * this many times its ready timeout: on a loaded machine a 4-worker backend can need minutes,
 * while one that is stuck stops making progress and fails after the timeout alone.
 */
export const START_CAP_FACTOR = 5;

/** CPU time (clock ticks) of a process and its descendants, from /proc (Linux); 0 when gone. */
export async function processTreeCpuTicks(pid: number, depth = 3): Promise<number> {
  let ticks = 0;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime: fields 14 and 15 of stat(5), 11 and 12 after the command name.
    ticks = Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
  if (depth === 0) return ticks;
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').then((t) => t.trim().split(/\s+/).filter(Boolean).map(Number), () => [] as number[]);
  for (const c of children) ticks += await processTreeCpuTicks(c, depth - 1);
  return ticks;
}

/**
 * Polls `ready` until it holds; gives up when the process exits, when it made no progress (no
 * CPU time used, nothing written to its log) for `stallMs`, or after `capMs` in all.
 */
export async function waitWhileProgressing(ready: () => Promise<boolean>, o: { pid: number; logFile: string; stallMs: number; capMs: number; exited: () => boolean; intervalMs?: number }): Promise<boolean> {
  const start = Date.now();
  let lastProgress = start;
  let last = { cpu: -1, log: -1 };
  for (;;) {
    if (await ready()) return true;
    if (o.exited()) return false;
    const now = { cpu: await processTreeCpuTicks(o.pid), log: await stat(o.logFile).then((st) => st.size, () => 0) };
    if (now.cpu !== last.cpu || now.log !== last.log) lastProgress = Date.now();
    last = now;
    if (Date.now() - lastProgress >= o.stallMs || Date.now() - start >= o.capMs) return false;
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 100));
  }
}

/** Runs a spec's argv as it is (node services, Prometheus); its files are written by startService. */
async function startProgram(spec: ProcessSpec, argv: readonly string[] = spec.argv): Promise<number> {
  await mkdir(path.dirname(spec.logFile), { recursive: true });
  await mkdir(spec.cwd, { recursive: true });
  const offset = await stat(spec.logFile).then((st) => st.size, () => 0);
  const child = await startLogged(argv, { cwd: spec.cwd, env: childEnv(spec), logFile: spec.logFile, detached: true });
  // The service's own word (its ready line) counts first; the probe is the fallback for
  // services that do not announce themselves.
  const announced = async () => spec.readyLine === true && hasReadyLine(await logSince(spec.logFile, offset), child.pid);
  const ready = await waitWhileProgressing(async () => child.exited() === undefined && ((await announced()) || (await probeReady(spec))), {
    pid: child.pid,
    logFile: spec.logFile,
    stallMs: spec.readyTimeoutMs,
    capMs: spec.readyTimeoutMs * START_CAP_FACTOR,
    exited: () => child.exited() !== undefined,
  });
  // A process that accepts connections is serving: a slow probe under load is no reason to kill it.
  if (!ready && child.exited() === undefined && (await isPortOpen(spec.port))) return child.pid;
  if (!ready) {
    const exited = child.exited();
    if (exited === undefined) await stopPid(child.pid, 2000);
    throw new ReplyxError(
      'RPX_SERVICE_START_FAILED',
      `${spec.name} ${exited !== undefined ? `exited (${exited})` : `was not healthy: no progress (CPU time, log output) for ${spec.readyTimeoutMs / 1000}s, or not ready after ${(spec.readyTimeoutMs * START_CAP_FACTOR) / 1000}s`}; log: ${(await logExcerpt(spec.logFile, 6)).slice(-1500)}`,
      `read ${spec.logFile} for the cause`,
    );
  }
  return child.pid;
}

const argAfter = (argv: readonly string[], flag: string): string | undefined => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);

/** Starts one service detached, waits until it is healthy and writes its pid file; resolves with the pid. */
export async function startService(spec: ProcessSpec, extra: { postgresUser?: string; postgresDatabase?: string; redisMaxmemoryMb?: number } = {}): Promise<number> {
  await assertPortFree(spec);
  await mkdir(path.dirname(spec.pidFile), { recursive: true });
  await writeSpecFiles(spec);
  let pid: number;
  switch (spec.kind) {
    case 'postgres':
      pid = (await startPostgres({ dir: spec.dir, port: spec.port, user: extra.postgresUser, database: extra.postgresDatabase, detached: true, readyTimeoutMs: spec.readyTimeoutMs })).pid;
      break;
    case 'redis':
      pid = (await startRedis({ dir: spec.dir, port: spec.port, detached: true, maxmemoryMb: extra.redisMaxmemoryMb, aclFile: argAfter(spec.argv, '--aclfile'), readyTimeoutMs: spec.readyTimeoutMs })).pid;
      break;
    case 'nginx':
      pid = (await startNginx({ dir: spec.dir, port: spec.port, configFile: argAfter(spec.argv, '-c')!, detached: true, readyTimeoutMs: spec.readyTimeoutMs })).pid;
      break;
    case 'node':
      pid = await startProgram(spec);
      break;
    case 'prometheus':
      // Debian's binary; a clear error naming the package when it is missing.
      pid = await startProgram(spec, [requireBinary('prometheus'), ...spec.argv.slice(1)]);
      break;
  }
  await writeFile(spec.pidFile, `${pid}\n`);
  return pid;
}

/**
 * Sends a service its stop signal after removing its pid file: the missing pid file is what
 * tells the watchdog the stop is intended. Resolves with the pid signalled, if it was running.
 */
export async function signalStop(spec: ProcessSpec): Promise<number | undefined> {
  const pid = await readPid(spec.pidFile);
  const running = pid !== undefined && pidMatches(pid, processMarker(spec));
  await rm(spec.pidFile, { force: true });
  if (running) {
    try {
      // A stopped (hung) process must run to act on the signal.
      process.kill(pid, 'SIGCONT');
      process.kill(pid, spec.stopSignal ?? 'SIGTERM');
    } catch {
      // Gone in between.
    }
  }
  return running ? pid : undefined;
}

/** Stops a service by its pid file (its stop signal, SIGKILL after its grace); resolves with the pid it stopped. */
export async function stopService(spec: ProcessSpec): Promise<number | undefined> {
  const pid = await readPid(spec.pidFile);
  const running = pid !== undefined && pidMatches(pid, processMarker(spec));
  // The pid file goes first, so the watchdog never takes this stop for a crash.
  await rm(spec.pidFile, { force: true });
  if (running) await stopPid(pid, spec.stopGraceMs, undefined, spec.stopSignal ?? 'SIGTERM');
  return running ? pid : undefined;
}

/**
 * What a restart leaves running beside a service's new process: the old one finishing
 * (`handed-over`), a gateway's stand-in, or the stand-in of an earlier restart that was cut short.
 */
export type LeftoverKind = 'handed-over' | 'stand-in' | 'earlier-stand-in';

/** Every kind, for a stop of the stack. */
export const LEFTOVER_KINDS: readonly LeftoverKind[] = ['handed-over', 'stand-in', 'earlier-stand-in'];

/** Where a restart keeps the pid of a process it left running beside the service, so a stop of the stack ends it too. */
export function leftoverPidFile(spec: ProcessSpec, kind: LeftoverKind): string {
  return `${spec.pidFile}.${kind}`;
}

/** Ends a process a restart left beside the service (its stop signal, SIGKILL after its grace), if it still runs; resolves with its pid. */
export async function endLeftover(spec: ProcessSpec, kind: LeftoverKind): Promise<number | undefined> {
  const file = leftoverPidFile(spec, kind);
  const pid = await readPid(file);
  const running = pid !== undefined && pidMatches(pid, processMarker(spec));
  if (running) await stopPid(pid, spec.stopGraceMs, undefined, spec.stopSignal ?? 'SIGTERM');
  await rm(file, { force: true });
  return running ? pid : undefined;
}

/**
 * The first half of a graceful restart: the old process gets `signal`, lets go of its port and
 * goes on serving what it holds (nginx finishes its requests and exits; a gateway keeps its
 * clients until endLeftover). Resolves with its pid once the port is free; a process that does
 * not let go within 5 s is stopped the ordinary way.
 */
export async function handOverService(spec: ProcessSpec, signal: NodeJS.Signals): Promise<number | undefined> {
  const pid = await readPid(spec.pidFile);
  if (pid === undefined || !pidMatches(pid, processMarker(spec))) return stopService(spec);
  // Without the pid file the watchdog takes the old process's exit for what it is: intended.
  // The old pid is kept aside so a stop of the stack ends it too, not only its own timeout.
  await writeFile(leftoverPidFile(spec, 'handed-over'), `${pid}\n`);
  await rm(spec.pidFile, { force: true });
  // A stopped (hung) process must run to act on the signal.
  process.kill(pid, 'SIGCONT');
  process.kill(pid, signal);
  if (await waitUntil(async () => !(await isPortOpen(spec.port)), 5000, 20)) return pid;
  // It did not let go of the port: stop it the ordinary way.
  await stopPid(pid, spec.stopGraceMs, undefined, spec.stopSignal ?? 'SIGTERM');
  await rm(leftoverPidFile(spec, 'handed-over'), { force: true });
  return pid;
}
