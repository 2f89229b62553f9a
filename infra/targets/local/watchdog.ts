import { appendFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ProcessSpec } from './plan.js';
import { pidMatches, processMarker, readPid, startService } from './supervisor.js';

// The local stack's restart policy, like Docker's `restart: unless-stopped`: a service whose
// pid file names a process that is gone has crashed (an intended stop removes the pid file
// first) and is started again with exponential backoff; each restart is counted and logged.
// The decisions are pure (nextAction); watchWithPolicy is the thin loop a detached process runs.

/** Backoff and polling of the watchdog; the defaults are Docker's (100 ms doubling, capped) stretched for slower starts. */
export interface RestartPolicy {
  /** How often pid files are checked. */
  readonly pollMs: number;
  /** Delay before the first restart after a crash; doubles with every crash in a row. */
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
  /** A service up this long has its crash streak (and so its backoff) reset. */
  readonly resetAfterMs: number;
}

/** The policy `npm start` and test stacks run with. */
export const DEFAULT_RESTART_POLICY: RestartPolicy = { pollMs: 500, backoffBaseMs: 500, backoffCapMs: 30_000, resetAfterMs: 30_000 };

/** The file listing the services to watch and how to start them (rewritten when the plan changes). */
export const superviseFile = (stateDir: string) => path.join(stateDir, 'run', 'supervise.json');
/** Restart counts by service, written by the watchdog, read by `stack status`. */
export const restartsFile = (stateDir: string) => path.join(stateDir, 'run', 'restarts.json');
/** The watchdog's pid file and log. */
export const watchdogPidFile = (stateDir: string) => path.join(stateDir, 'run', 'watchdog.pid');
export const watchdogLogFile = (stateDir: string) => path.join(stateDir, 'logs', 'watchdog.log');
/** The watchdog program (its path is also how its process is recognised). */
export const WATCHDOG_ENTRY = 'watchdog-main.ts';

/** What the watchdog is given: the plan's process specs and the start extras. */
export interface SuperviseFile {
  readonly services: readonly ProcessSpec[];
  readonly extras: { postgresUser?: string; postgresDatabase?: string; redisMaxmemoryMb?: number };
}

/** The restart record of one service. */
export interface RestartRecord {
  readonly restarts: number;
  /** When the last crash was seen (ISO time). */
  readonly lastCrashAt?: string;
  /** Why the last restart attempt failed, if it did. */
  readonly lastError?: string;
}

/** What the watchdog remembers about one service between polls. */
export interface WatchState {
  /** Crashes in a row (reset after `resetAfterMs` of uptime). */
  readonly streak: number;
  /** Waiting to restart after a crash, not before this time. */
  readonly restartAt?: number;
  /** Since when the current process has been seen alive. */
  readonly upSince?: number;
}

/** What one poll observed about a service. */
export type Observation = 'alive' | 'crashed' | 'stopped';

/** The delay before restart number `streak` (1 = first crash in a row). */
export function backoffMs(streak: number, policy: RestartPolicy = DEFAULT_RESTART_POLICY): number {
  return Math.min(policy.backoffCapMs, policy.backoffBaseMs * 2 ** Math.max(0, streak - 1));
}

/** The watchdog's decision for one service at `now` (pure): its next state and whether to start it now. */
export function nextAction(state: WatchState, seen: Observation, now: number, policy: RestartPolicy = DEFAULT_RESTART_POLICY): { state: WatchState; start: boolean; crashed: boolean } {
  if (seen === 'alive') {
    const upSince = state.upSince ?? now;
    const streak = now - upSince >= policy.resetAfterMs ? 0 : state.streak;
    return { state: { streak, upSince }, start: false, crashed: false };
  }
  if (seen === 'stopped' && state.restartAt === undefined) return { state: { streak: state.streak }, start: false, crashed: false };
  if (seen === 'crashed' && state.restartAt === undefined) {
    const streak = state.streak + 1;
    const restartAt = now + backoffMs(streak, policy);
    return { state: { streak, restartAt }, start: false, crashed: true };
  }
  // Waiting for a restart (its pid file is gone, or still names the dead process).
  return { state, start: now >= (state.restartAt ?? now), crashed: false };
}

/** Writes JSON through a temp file and rename, so readers never see half a file. */
async function writeJson(file: string, value: unknown): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, file);
}

/** Records the plan the watchdog restarts services from. */
export async function writeSuperviseFile(stateDir: string, content: SuperviseFile): Promise<void> {
  await writeJson(superviseFile(stateDir), content);
}

/** Restart records by service name ({} when none). */
export async function readRestarts(stateDir: string): Promise<Record<string, RestartRecord>> {
  try {
    return JSON.parse(await readFile(restartsFile(stateDir), 'utf8')) as Record<string, RestartRecord>;
  } catch {
    return {};
  }
}

async function readSupervise(stateDir: string): Promise<SuperviseFile | undefined> {
  try {
    return JSON.parse(await readFile(superviseFile(stateDir), 'utf8')) as SuperviseFile;
  } catch {
    return undefined;
  }
}

async function observe(spec: ProcessSpec): Promise<{ seen: Observation; pid?: number }> {
  const pid = await readPid(spec.pidFile);
  if (pid === undefined) return { seen: 'stopped' };
  return pidMatches(pid, processMarker(spec)) ? { seen: 'alive', pid } : { seen: 'crashed', pid };
}

/**
 * Watches the services in `stateDir`'s supervise file until that file is removed (the stack is
 * stopped) or `signal` aborts; restarts crashed ones per `policy` and logs every step.
 */
export async function watchWithPolicy(stateDir: string, policy: RestartPolicy = DEFAULT_RESTART_POLICY, signal?: AbortSignal): Promise<void> {
  const logFile = watchdogLogFile(stateDir);
  await mkdir(path.dirname(logFile), { recursive: true });
  const log = (level: 'info' | 'warn' | 'error', service: string, msg: string, extra: Record<string, unknown> = {}) =>
    appendFile(logFile, `${JSON.stringify({ time: new Date().toISOString(), level, service: 'watchdog', target: service, pid: process.pid, ...extra, msg })}\n`).catch(() => undefined);
  const states = new Map<string, WatchState>();
  await log('info', '-', 'watchdog started: crashed services are restarted with backoff (an intended stop removes the pid file first)');
  while (!signal?.aborted) {
    const plan = await readSupervise(stateDir);
    if (!plan) break;
    for (const spec of plan.services) {
      const { seen, pid } = await observe(spec);
      const now = Date.now();
      const before = states.get(spec.name) ?? { streak: 0 };
      const decision = nextAction(before, seen, now, policy);
      states.set(spec.name, decision.state);
      if (decision.crashed) {
        // Status must not show a dead pid as the service; the record below keeps the count.
        await rm(spec.pidFile, { force: true });
        const records = await readRestarts(stateDir);
        await writeJson(restartsFile(stateDir), { ...records, [spec.name]: { ...records[spec.name], restarts: records[spec.name]?.restarts ?? 0, lastCrashAt: new Date(now).toISOString() } });
        await log('warn', spec.name, `${spec.name} (pid ${pid}) exited unexpectedly; restarting in ${decision.state.restartAt! - now} ms (crash ${decision.state.streak} in a row)`, { crashed_pid: pid });
      }
      if (!decision.start) continue;
      // Someone (an operator's restart) may have started it meanwhile.
      if ((await observe(spec)).seen === 'alive') {
        states.set(spec.name, { streak: decision.state.streak });
        continue;
      }
      const t0 = Date.now();
      try {
        const newPid = await startService(spec, plan.extras);
        const records = await readRestarts(stateDir);
        const restarts = (records[spec.name]?.restarts ?? 0) + 1;
        await writeJson(restartsFile(stateDir), { ...records, [spec.name]: { restarts, lastCrashAt: records[spec.name]?.lastCrashAt } });
        states.set(spec.name, { streak: decision.state.streak, upSince: Date.now() });
        await log('info', spec.name, `${spec.name} restarted: pid ${newPid}, ready in ${Date.now() - t0} ms (restart ${restarts})`, { new_pid: newPid, restarts });
      } catch (err) {
        const streak = decision.state.streak + 1;
        const restartAt = Date.now() + backoffMs(streak, policy);
        states.set(spec.name, { streak, restartAt });
        const message = err instanceof Error ? err.message : String(err);
        const records = await readRestarts(stateDir);
        await writeJson(restartsFile(stateDir), { ...records, [spec.name]: { restarts: records[spec.name]?.restarts ?? 0, lastCrashAt: records[spec.name]?.lastCrashAt, lastError: message.slice(0, 500) } });
        await log('error', spec.name, `${spec.name} did not start again: ${message.slice(0, 300)}; next attempt in ${restartAt - Date.now()} ms`);
      }
    }
    await new Promise((r) => setTimeout(r, policy.pollMs));
  }
  await log('info', '-', 'watchdog stopped');
}

/** What `stack status` says a service is. */
export type ServiceCondition = 'healthy' | 'unhealthy' | 'crashed' | 'stopped';

/** What one service looks like to `stack status`, as the condition needs it. */
export interface ConditionInput {
  readonly name: string;
  /** Its process is alive. */
  readonly running: boolean;
  /** Its ready probe passes. */
  readonly healthy: boolean;
  /** Its pid file exists (an intended stop removes it; a crash leaves it naming a dead process). */
  readonly pidFilePresent: boolean;
  readonly record?: RestartRecord;
  readonly watchdogRunning: boolean;
  /** A data store it depends on that is not healthy (its /health fails because of it). */
  readonly storeDown?: { readonly name: string; readonly state: ServiceCondition };
}

/**
 * A service's condition and the command that recovers it (pure): `crashed` when its process died
 * without an intended stop (pid file left behind, or the running watchdog saw it crash and has not
 * got it back yet), `unhealthy` when it runs but its probe fails (hung, or failing inside), `stopped`
 * when it was stopped on purpose or never started.
 */
export function serviceCondition(s: ConditionInput): { state: ServiceCondition; recovery?: string } {
  if (s.running && s.healthy) return { state: 'healthy' };
  const restart = `npm run stack -- restart ${s.name}`;
  // Restarting a service whose store is down repairs nothing: the store is the thing to recover.
  if (s.running && s.storeDown) return { state: 'unhealthy', recovery: `its ${s.storeDown.name} is ${s.storeDown.state}: recover ${s.storeDown.name} first (see its line); this recovers by itself` };
  if (s.running) return { state: 'unhealthy', recovery: `runs but does not answer its health probe (hung or failing): read its log, then ${restart}` };
  // The watchdog removes a crashed service's pid file before restarting it; its record remembers the crash.
  const crashed = s.pidFilePresent || (s.watchdogRunning && s.record?.lastCrashAt !== undefined);
  if (!crashed) return { state: 'stopped', recovery: 'npm start' };
  if (s.watchdogRunning) return { state: 'crashed', recovery: `the watchdog restarts it with backoff${s.record?.lastError ? ` (its last attempt failed: fix that first)` : ''}; now: ${restart}` };
  return { state: 'crashed', recovery: 'npm start (starts it and the watchdog)' };
}
