import { readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ReplyxError } from '../../errors.js';
import { redisAdminCommand } from '../../operate/probes.js';
import { writeAtomic } from '../../operate/rollback/history.js';
import { renderNginxConfig } from '../../render/nginx.js';
import { wsRoutingChanged } from '../../render/nginx-diff.js';
import { redactLogLine } from '../../rules/index.js';
import { restartPlanService, startExtras, type ProgressLog } from './local-stack.js';
import { endOldWorkers, reloadAndWait } from './nginx-workers.js';
import { observeProcesses, observeSettings, runningNginxConfig } from './observe.js';
import { startOrder, type LocalSecrets, type LocalStackPlan } from './plan.js';
import { describeOwner, portOwner } from './port-owner.js';
import { testNginxConfig } from './processes.js';
import { serviceState, startService } from './supervisor.js';

// `npm run stack -- apply`: brings a running local stack back to its stack file, as `pulumi up`
// does for containers. Services that are down are started; services whose loaded settings
// drifted (environment, Redis maxmemory) are restarted or reconfigured; the nginx config is
// re-rendered, validated with `nginx -t`, swapped atomically and reloaded when the running one
// differs. Idempotent: on a stack that matches its file it changes nothing.

/** What apply did, one line per action. */
export interface ApplyReport {
  readonly actions: readonly string[];
}

/**
 * A master killed with SIGKILL leaves its workers running, holding the port. They are ours when
 * they have this stack's nginx logs open; ends them so a new master can bind.
 */
async function endOrphanedWorkers(plan: LocalStackPlan, port: number): Promise<number> {
  const owner = portOwner(port);
  if (owner?.pid === undefined || owner.command !== 'nginx') return 0;
  const fds = await readdir(`/proc/${owner.pid}/fd`).catch(() => [] as string[]);
  const links = await Promise.all(fds.map((fd) => readlink(`/proc/${owner.pid}/fd/${fd}`).catch(() => '')));
  if (!links.some((l) => l.startsWith(plan.nginxPrefixDir))) return 0;
  let ended = 0;
  for (let p = portOwner(port); p?.pid !== undefined && p.command === 'nginx' && ended < 64; p = portOwner(port)) {
    process.kill(p.pid, 'SIGKILL');
    ended += 1;
    await new Promise((r) => setTimeout(r, 50));
  }
  return ended;
}

/** Re-renders, validates, swaps and reloads the nginx config when what runs differs; returns what it did. */
async function applyNginx(plan: LocalStackPlan, log: ProgressLog): Promise<string | undefined> {
  const spec = plan.services.find((s) => s.name === 'nginx')!;
  const text = renderNginxConfig(plan.topology, 'local', { prefixDir: plan.nginxPrefixDir });
  const onDisk = await readFile(plan.nginxConfigFile, 'utf8').catch(() => undefined);
  const st = await serviceState(spec);
  const running = st.running && st.pid !== undefined ? await runningNginxConfig(spec) : undefined;
  const stale = running !== undefined && (!running.ok || running.value.notLoaded !== undefined);
  if (onDisk === text && !stale && st.running) return undefined;
  if (onDisk !== text) {
    const next = `${plan.nginxConfigFile}.next`;
    await writeFile(next, text);
    try {
      await testNginxConfig(next, plan.nginxPrefixDir);
    } finally {
      await rm(next, { force: true });
    }
    await writeAtomic(plan.nginxConfigFile, text);
    log(`  nginx       config re-rendered from the stack file, nginx -t ok, swapped (temp file + rename)`);
  }
  if (!st.running || st.pid === undefined) {
    const orphans = await endOrphanedWorkers(plan, spec.port);
    if (orphans > 0) log(`  nginx       ended ${orphans} worker${orphans === 1 ? '' : 's'} left behind by a killed master (they held port ${spec.port})`);
    const pid = await startService(spec, startExtras(plan));
    return `nginx started (pid ${pid})`;
  }
  const { reloaded, oldWorkers } = await reloadAndWait(st.pid);
  if (!reloaded) throw new ReplyxError('RPX_ROLLBACK_RELOAD', `nginx (pid ${st.pid}) did not start new workers after SIGHUP`, `read ${path.join(plan.nginxPrefixDir, 'logs/error.log')}`);
  if (running?.ok && wsRoutingChanged(text, running.value.text)) {
    // Sockets on the old workers still go where the drifted config sent them (a multi-worker
    // backend loses events): end them now rather than after worker_shutdown_timeout.
    const ended = await endOldWorkers(st.pid, oldWorkers, 500);
    return `nginx reloaded (SIGHUP to pid ${st.pid}; new workers serving); /ws/ routing had drifted: ${ended === 0 ? 'no old worker held connections' : `ended ${ended} old worker${ended === 1 ? '' : 's'} still holding /ws/ connections (clients reconnect through the rendered route and resume with since=)`}`;
  }
  return `nginx reloaded (SIGHUP to pid ${st.pid}; new workers serving)`;
}

/** Brings the running stack to `plan` (its stack file on the ports it runs on); resolves with what it changed. */
export async function applyLocalStack(plan: LocalStackPlan, log: ProgressLog): Promise<ApplyReport> {
  const actions: string[] = [];
  const act = (line: string) => {
    actions.push(line);
    log(`  ${line}`);
  };
  const procs = new Map((await observeProcesses(plan)).map((p) => [p.service, p]));
  const drift = new Map((await observeSettings(plan)).map((s) => [s.service, s.drift]));
  for (const spec of startOrder(plan.services)) {
    if (spec.name === 'nginx') continue;
    const p = procs.get(spec.name);
    if (!p?.running) {
      const owner = portOwner(spec.port);
      if (owner !== undefined) throw new ReplyxError('RPX_PORT_TAKEN', `${spec.name} is down and ${describeOwner(owner)} holds its port ${spec.port}`, `stop that process, then run apply again`);
      const pid = await startService(spec, startExtras(plan));
      act(`${spec.name} was not running: started (pid ${pid})`);
      continue;
    }
    const changed = drift.get(spec.name) ?? [];
    if (spec.name === 'redis' && changed.length > 0) {
      // Redis applies maxmemory live; restarting it would drop the broker's connections.
      await redisAdminCommand(plan.redisUrl, 'CONFIG', 'SET', 'maxmemory', String(plan.topology.redis.maxmemoryMb * 1024 * 1024));
      act(`redis maxmemory set to ${plan.topology.redis.maxmemoryMb} MB (CONFIG SET)`);
    } else if (changed.length > 0 || !p.listening) {
      const pid = await restartPlanService(plan, spec.name, () => undefined);
      act(`${spec.name} restarted (pid ${pid}): ${changed.length > 0 ? `it ran with other ${changed.map((d) => d.key).join(', ')}` : 'it did not listen on its port'}`);
    }
  }
  const nginx = await applyNginx(plan, log);
  if (nginx) act(nginx);
  if (actions.length === 0) log('  nothing to do: the running stack matches the stack file');
  return { actions };
}

/**
 * `npm run stack -- redact-logs`: replaces every credential the check reports in the stack's logs
 * with `[redacted]`, in place (the services keep appending to the same files). The credentials
 * themselves leaked and must still be rotated.
 */
export async function redactLocalLogs(plan: LocalStackPlan, secrets: LocalSecrets, log: ProgressLog): Promise<number> {
  const known = Object.entries(secrets).map(([name, value]) => ({ name, value: String(value) }));
  let changed = 0;
  for (const file of [...new Set(plan.services.flatMap((s) => [...s.logFiles, s.logFile]))]) {
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    const lines = text.split('\n');
    const redacted = lines.map((l) => redactLogLine(l, known));
    const n = redacted.filter((l, i) => l !== lines[i]).length;
    if (n === 0) continue;
    await writeFile(file, redacted.join('\n'));
    changed += n;
    log(`  ${file}: ${n} line${n === 1 ? '' : 's'} redacted`);
  }
  if (changed === 0) log('  no credentials found in the logs');
  return changed;
}
