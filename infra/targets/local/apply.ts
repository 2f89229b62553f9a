import { readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ReplyxError } from '../../errors.js';
import { tokenProtocols } from '../../../gateway/src/auth/credentials.js';
import { seconds } from '../../operate/cli.js';
import { DEFAULT_PROBE_DIALOG, type ProbeCredentials } from '../../operate/live-state.js';
import { httpJson, redisAdminCommand, wsFirstFrame } from '../../operate/probes.js';
import type { StackContext } from '../../operate/stack.js';
import { StepRunner } from '../../operate/steps.js';
import { runCommand } from '../../processes/run.js';
import { readChecksumFromConfig, renderNginxConfig } from '../../render/nginx.js';
import { editStackSettings } from '../../topology/edit.js';
import { topologyChecksum, type WsRoute } from '../../topology/index.js';
import { applyLocalChange, localPlanFor, type RunningLocalStack } from './rollback.js';
import { waitUntil } from './ports.js';
import { writeAtomic } from '../../operate/rollback/history.js';
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
  const text = renderNginxConfig(plan.topology, 'local', plan.nginxRender);
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
  const running = startOrder(plan.services).filter((spec) => spec.name !== 'nginx' && procs.get(spec.name)?.running);
  for (const spec of startOrder(plan.services)) {
    if (spec.name === 'nginx' || procs.get(spec.name)?.running) continue;
    const owner = portOwner(spec.port);
    if (owner !== undefined) throw new ReplyxError('RPX_PORT_TAKEN', `${spec.name} is down and ${describeOwner(owner)} holds its port ${spec.port}`, `stop that process, then run apply again`);
    const pid = await startService(spec, startExtras(plan));
    act(`${spec.name} was not running: started (pid ${pid})`);
  }
  // nginx before the services it fronts: a gateway with a longer heartbeat must never run behind
  // the older, shorter /ws/ read timeout.
  const nginx = await applyNginx(plan, log);
  if (nginx) act(nginx);
  for (const spec of running) {
    const p = procs.get(spec.name)!;
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
  if (actions.length === 0) log('  nothing to do: the running stack matches the stack file');
  return { actions };
}

/** What serves /ws/ through nginx and how many workers the backend runs, as the running stack answers (undefined where it does not). */
async function observeRouteAndWorkers(plan: LocalStackPlan, creds: ProbeCredentials): Promise<{ wsRoute?: WsRoute; workers?: number; heartbeatMs?: number; detail: string }> {
  // Loopback by address, as nginx and the services listen on 127.0.0.1 (localhost may be ::1 first).
  const frame = await wsFirstFrame(`ws://127.0.0.1:${plan.ports.nginx}/ws/dialogs/${DEFAULT_PROBE_DIALOG}`, {}, 3000, tokenProtocols(creds.adminToken ?? ''));
  const server = frame.ok ? (frame.value as { server?: unknown }).server : undefined;
  const hb = frame.ok ? (frame.value as { heartbeat_ms?: unknown }).heartbeat_ms : undefined;
  const health = await httpJson(`http://127.0.0.1:${plan.ports.backend}/health`);
  const workers = health.ok ? (health.value as { workers?: unknown }).workers : undefined;
  const wsRoute: WsRoute | undefined = server === 'ws-gateway' ? 'gateway' : server === 'backend' ? 'backend' : undefined;
  return {
    ...(wsRoute ? { wsRoute } : {}),
    ...(typeof workers === 'number' ? { workers } : {}),
    ...(typeof hb === 'number' ? { heartbeatMs: hb } : {}),
    detail: `/ws/ ${frame.ok ? `answered by ${String(server)}` : `not answered (${frame.error})`}, backend ${health.ok ? `${String(workers)} workers` : `not answering (${health.error})`}`,
  };
}

/** Every setting of the stack file that the running stack does not run (empty when all are live), each with the command that applies it. */
async function notLive(plan: LocalStackPlan, creds: ProbeCredentials): Promise<{ what: string; fix: string }[]> {
  const out: { what: string; fix: string }[] = [];
  const t = plan.topology;
  for (const s of await observeSettings(plan)) {
    if (s.drift.length > 0) out.push({ what: `${s.service} runs other ${s.drift.map((d) => d.key).join(', ')}`, fix: `npm run stack -- restart ${s.service}` });
  }
  const nginx = plan.services.find((s) => s.name === 'nginx')!;
  const running = await runningNginxConfig(nginx);
  if (!running.ok) out.push({ what: `nginx: ${running.error}`, fix: 'npm run stack -- restart nginx' });
  else if (running.value.notLoaded !== undefined || readChecksumFromConfig(running.value.text) !== topologyChecksum(t)) out.push({ what: 'nginx runs a config rendered from another stack file', fix: 'npm run stack -- apply' });
  // What clients meet: the server behind /ws/, its heartbeat, the backend's workers (a restart may still be finishing).
  let seen = await observeRouteAndWorkers(plan, creds);
  const live = (o: typeof seen) => o.wsRoute === t.wsRoute && o.workers === t.backend.workers && (t.wsRoute !== 'gateway' || o.heartbeatMs === t.gateway.heartbeatMs);
  await waitUntil(async () => live((seen = await observeRouteAndWorkers(plan, creds))), LIVE_WAIT_MS, 250);
  // Nobody answering /ws/ is a down or hung server (restart it); another server answering is a route to move back.
  if (seen.wsRoute !== t.wsRoute) out.push({ what: `/ws/ is served by ${seen.wsRoute ?? 'nobody'}, the stack file says ${t.wsRoute} (${seen.detail})`, fix: seen.wsRoute === undefined ? `npm run stack -- restart ${t.wsRoute}` : `npm run rollback -- --ws-to ${t.wsRoute}` });
  if (seen.workers !== t.backend.workers) out.push({ what: `the backend runs ${String(seen.workers ?? '?')} workers, the stack file says ${t.backend.workers}`, fix: 'npm run stack -- restart backend' });
  if (t.wsRoute === 'gateway' && seen.wsRoute === 'gateway' && seen.heartbeatMs !== t.gateway.heartbeatMs) out.push({ what: `the gateway sends heartbeat_ms ${String(seen.heartbeatMs)}, the stack file says ${t.gateway.heartbeatMs}`, fix: 'npm run stack -- restart gateway' });
  return out;
}

/** How long the final verification waits for a just-restarted service to answer with its new settings. */
const LIVE_WAIT_MS = 15_000;

/** What `npm start` did to a stack that was already running. */
export interface RunningApplyReport extends ApplyReport {
  /** The live values verified afterwards (route, workers, heartbeat). */
  readonly verified: string;
}

/**
 * `npm start` on a running stack: applies the stack file for real. A change of the route or the
 * backend's worker count goes through the rollback's path (swap and reload nginx, drain the old
 * /ws/ server, restart the backend; towards the backend the workers change first, so /ws/ never
 * meets a multi-worker backend); then every other drifted setting is applied (nginx re-rendered
 * and reloaded before the services it fronts, changed services restarted, down services
 * started); finally the values are read back from the running processes. Throws
 * RPX_DEPLOY_NOT_APPLIED, with the command for each, when one is not live.
 */
export async function applyToRunningStack(ctx: StackContext, plan: LocalStackPlan, secrets: LocalSecrets, log: ProgressLog): Promise<RunningApplyReport> {
  const creds = await ctx.surface.credentials({});
  const t = plan.topology;
  const actions: string[] = [];
  const seen = await observeRouteAndWorkers(plan, creds);
  const wsRoute = seen.wsRoute ?? t.wsRoute;
  const workers = seen.workers ?? t.backend.workers;
  if (wsRoute !== t.wsRoute || workers !== t.backend.workers) {
    // The running state as a stack file: the file with the route and worker count that run.
    const fromText = editStackSettings(ctx.stackText, [{ key: 'backend.workers', value: workers }, { key: 'wsRoute', value: wsRoute }], path.basename(ctx.stackFile));
    const local: RunningLocalStack = { stateDir: plan.stateDir, secrets, plan: localPlanFor({ stateDir: plan.stateDir, secrets, plan }, fromText, path.basename(ctx.stackFile)) };
    log(`  change      wsRoute=${wsRoute}, backend workers=${workers} -> wsRoute=${t.wsRoute}, backend workers=${t.backend.workers}`);
    const steps = new StepRunner((l) => log(`  ${l}`));
    const outcome = await applyLocalChange(ctx, local, ctx.stackText, { wsRoute: t.wsRoute, backendWorkers: t.backend.workers }, steps, { run: runCommand, creds, print: (l) => log(`  ${l}`), hasPulumi: false });
    for (const w of outcome.warnings) log(`  warning: ${w}`);
    actions.push(`wsRoute=${t.wsRoute}, backend workers=${t.backend.workers} applied and verified in ${seconds(outcome.verifiedMs ?? steps.elapsedMs())}`);
  }
  const rest = await applyLocalStack(plan, log);
  actions.push(...rest.actions);
  const missing = await notLive(plan, creds);
  if (missing.length > 0) {
    throw new ReplyxError('RPX_DEPLOY_NOT_APPLIED', `the running stack does not run ${path.basename(ctx.stackFile)}: ${missing.map((m) => m.what).join('; ')}`, `run ${[...new Set(missing.map((m) => m.fix))].join(', then ')}, then npm run check`);
  }
  const verified = `/ws/ served by ${t.wsRoute === 'gateway' ? `the gateway (heartbeat ${t.gateway.heartbeatMs} ms)` : 'the backend'}, backend ${t.backend.workers} worker${t.backend.workers === 1 ? '' : 's'}, nginx config ${topologyChecksum(t)} loaded, backend and gateway run the rendered settings`;
  return { actions, verified };
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
