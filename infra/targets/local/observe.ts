import { readFile, stat } from 'node:fs/promises';
import { isGatewayProcess } from '../../topology/service-names.js';
import { execa } from 'execa';
import { postgresPing, redisAdminCommand, redisPing, tailFile } from '../../operate/probes.js';
import type { TargetObservation } from '../../operate/surface.js';
import { renderServiceEnv, SECRET_SETTING_REFS, settingRefsOf } from '../../render/service-env.js';
import { settingsDrift, type LogObservation, type ProcessObservation, type Probe, type RunningConfig, type SettingsObservation } from '../../rules/index.js';
import type { LocalSecrets, LocalStackPlan, ProcessSpec } from './plan.js';
import { describeOwner, portOwner } from './port-owner.js';
import { requireBinary } from './processes.js';
import { serviceState } from './supervisor.js';

// What the check sees of a running local stack, read from the processes themselves: the config
// the nginx master loaded (`nginx -T` on the file and prefix in its own command line), which
// process holds each port, the environment each node service was started with, Redis's loaded
// maxmemory, and the tails of every log.

/** Lines of each log the check scans for credentials. */
export const LOG_TAIL_LINES = 5000;

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

/** The value of `-flag` in an argv, if present. */
function argAfter(argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** The section of `nginx -T` output that is `file` (the dump lists every included file after a `# configuration file X:` line). */
export function configFileSection(dump: string, file: string): string | undefined {
  const parts = dump.split(/^# configuration file (.+):$/m);
  for (let i = 1; i < parts.length; i += 2) if (parts[i] === file) return parts[i + 1]!.replace(/^\n/, '');
  return undefined;
}

/** Start time of a process (ms since the epoch), from /proc (Linux): its start tick against the uptime now (btime is whole seconds, too coarse). */
async function processStartMs(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const uptimeS = Number((await readFile('/proc/uptime', 'utf8')).split(' ')[0]);
    // USER_HZ is 100 on every Linux the stack supports.
    return Date.now() - (uptimeS - ticks / 100) * 1000;
  } catch {
    return undefined;
  }
}

/** The children of a process (Linux /proc). */
async function childPids(pid: number): Promise<number[]> {
  try {
    return (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The parent of a process, or undefined. */
async function parentPid(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** True when `pid` is `ancestor` or runs under it. */
async function descendsFrom(pid: number, ancestor: number): Promise<boolean> {
  for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 16; hops += 1) {
    if (p === ancestor) return true;
    p = await parentPid(p);
  }
  return false;
}

/** The config the running nginx master loaded: `nginx -T` of the file and prefix its own argv names. */
export async function runningNginxConfig(spec: ProcessSpec): Promise<Probe<RunningConfig>> {
  const st = await serviceState(spec);
  if (!st.running || st.pid === undefined) return { ok: false, error: 'nginx is not running' };
  let argv: string[];
  try {
    // nginx rewrites its title ("nginx: master process nginx -p … -c …"): split on spaces too.
    argv = (await readFile(`/proc/${st.pid}/cmdline`, 'utf8')).split(/[\0 ]/);
  } catch (err) {
    return { ok: false, error: `cannot read nginx's command line: ${errorText(err)}` };
  }
  const conf = argAfter(argv, '-c');
  const prefix = argAfter(argv, '-p');
  if (!conf) return { ok: false, error: `nginx (pid ${st.pid}) was started without -c` };
  const r = await execa(requireBinary('nginx'), ['-T', ...(prefix ? ['-p', prefix] : []), '-c', conf], { reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0) return { ok: false, error: `nginx -T -c ${conf}: ${String(r.stderr).trim().split('\n').pop() ?? `exit ${r.exitCode}`}` };
  const text = configFileSection(String(r.stdout), conf);
  if (text === undefined) return { ok: false, error: `nginx -T printed no section for ${conf}` };
  // Workers start when nginx (re)loads its config: a file written after the newest one was not loaded.
  let notLoaded: string | undefined;
  const workers = await childPids(st.pid);
  const loadedAt = Math.max(...(await Promise.all([st.pid, ...workers].map(processStartMs))).map((t) => t ?? 0));
  const mtime = (await stat(conf).catch(() => undefined))?.mtimeMs;
  if (mtime !== undefined && loadedAt > 0 && mtime > loadedAt + 20) notLoaded = `${conf} was changed after nginx (pid ${st.pid}) loaded it, without a reload: what runs is older than the file, the next reload loads it`;
  return { ok: true, value: { text, source: `nginx -T -c ${conf} (pid ${st.pid})`, ...(notLoaded ? { notLoaded } : {}) } };
}

/** Every service's process and who listens on its port. */
export async function observeProcesses(plan: LocalStackPlan): Promise<ProcessObservation[]> {
  return Promise.all(
    plan.services.map(async (spec): Promise<ProcessObservation> => {
      const st = await serviceState(spec);
      const owner = portOwner(spec.port);
      const running = st.running && st.pid !== undefined;
      const ours = running && owner?.pid !== undefined && (await descendsFrom(owner.pid, st.pid!));
      // An owner we cannot name (no ss, no permission) is given the benefit of the doubt when the service answers.
      const listening = running && (ours || (owner !== undefined && owner.pid === undefined && st.healthy));
      const foreign = owner !== undefined && !ours && owner.pid !== undefined ? describeOwner(owner) : undefined;
      return { service: spec.name, ...(st.pid !== undefined ? { pid: st.pid } : {}), running, listening, ...(foreign ? { foreignListener: foreign } : {}) };
    }),
  );
}

/** The environment a process was started with (Linux /proc). */
async function processEnv(pid: number): Promise<Record<string, string>> {
  const raw = await readFile(`/proc/${pid}/environ`, 'utf8');
  return Object.fromEntries(
    raw
      .split('\0')
      .filter((kv) => kv.includes('='))
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
}

/** The settings backend and gateway loaded (their environment) and Redis's maxmemory, compared with the plan's. */
export async function observeSettings(plan: LocalStackPlan): Promise<SettingsObservation[]> {
  const out: SettingsObservation[] = [];
  for (const spec of plan.services) {
    const rendered = spec.name === 'backend' ? 'backend' : isGatewayProcess(spec.name) ? 'gateway' : undefined;
    if (rendered === undefined) continue;
    const st = await serviceState(spec);
    if (!st.running || st.pid === undefined) continue;
    const secretKeys = new Set(settingRefsOf(renderServiceEnv(plan.topology, rendered)).filter((r) => SECRET_SETTING_REFS.has(r.ref)).map((r) => r.env));
    out.push({ service: spec.name, drift: settingsDrift(spec.env, await processEnv(st.pid), secretKeys) });
  }
  const redis = plan.services.find((s) => s.name === 'redis');
  if (redis && (await serviceState(redis)).running) {
    const reply = await redisAdminCommand(plan.redisUrl, 'CONFIG', 'GET', 'maxmemory').catch(() => []);
    const loaded = Array.isArray(reply) ? String(reply[1] ?? '') : '';
    const want = String(plan.topology.redis.maxmemoryMb * 1024 * 1024);
    out.push({ service: 'redis', drift: loaded === undefined || loaded === '' ? [] : settingsDrift({ maxmemory: want }, { maxmemory: loaded }, new Set()) });
  }
  return out;
}

/** The tails of every log file of the stack's services. */
export async function observeLogs(plan: LocalStackPlan, lines = LOG_TAIL_LINES): Promise<Probe<LogObservation[]>> {
  const files = [...new Set(plan.services.flatMap((s) => [...s.logFiles, s.logFile]))];
  const out: LogObservation[] = [];
  for (const file of files) {
    const tail = await tailFile(file, lines);
    // A log not written yet holds no secret.
    if (tail.ok) out.push({ file, lines: tail.value });
  }
  return { ok: true, value: out };
}

/** Everything the local target observes for the check. */
export async function observeLocalStack(plan: LocalStackPlan, secrets: LocalSecrets): Promise<TargetObservation> {
  const nginx = plan.services.find((s) => s.name === 'nginx')!;
  const safely = async <T>(what: string, fn: () => Promise<T>): Promise<Probe<T>> => {
    try {
      return { ok: true, value: await fn() };
    } catch (err) {
      return { ok: false, error: `${what}: ${errorText(err)}` };
    }
  };
  const [runningConfig, processes, settings, redis, postgres, logs] = await Promise.all([
    runningNginxConfig(nginx),
    safely('processes', () => observeProcesses(plan)),
    safely('settings', () => observeSettings(plan)),
    redisPing(plan.ports.redis),
    postgresPing(plan.databaseUrl),
    observeLogs(plan),
  ]);
  return { runningConfig, processes, settings, redis, postgres, logs, knownSecrets: Object.entries(secrets).map(([name, value]) => ({ name, value: String(value) })) };
}
