import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tokenProtocols } from '../../../gateway/src/auth/credentials.js';
import { ReplyxError } from '../../errors.js';
import { runHealth } from '../../operate/health.js';
import { DEFAULT_PROBE_DIALOG, type ProbeCredentials } from '../../operate/live-state.js';
import { httpJson, wsFirstFrame } from '../../operate/probes.js';
import { writeAtomic } from '../../operate/rollback/history.js';
import { persistStackChange } from '../../operate/rollback/persist.js';
import { planRollback, stateOf, type RollbackChange, type RollbackPlan } from '../../operate/rollback/plan.js';
import { REPO_DIR, withTopology, type StackContext } from '../../operate/stack.js';
import type { StepRunner } from '../../operate/steps.js';
import type { ApplyOptions, ApplyOutcome } from '../../operate/surface.js';
import { nginxLogFiles, renderNginxConfig } from '../../render/nginx.js';
import { topologyFromStackText } from '../../topology/index.js';
import { restartPlanService, superviseWith } from './local-stack.js';
import { gatewaySpecs } from './gateway-restart.js';
import { endOldWorkers, reloadAndWait } from './nginx-workers.js';
import { planLocalStack, type LocalSecrets, type LocalStackPlan, type ProcessSpec } from './plan.js';
import { isPortOpen, waitUntil } from './ports.js';
import { testNginxConfig } from './processes.js';
import { serviceState, signalStop, startService } from './supervisor.js';

// The local target's rollback: nginx config swapped atomically and reloaded with SIGHUP, the
// old /ws/ server made to drop its clients, the backend restarted with its new worker count,
// the result verified, and the stack file updated. A failure after the swap puts the previous
// config and processes back.

/** A running local stack: its state directory, secrets and plan (on the ports it runs on). */
export interface RunningLocalStack {
  readonly stateDir: string;
  readonly secrets: LocalSecrets;
  readonly plan: LocalStackPlan;
}

/** How long verification waits for the new route to answer. */
const VERIFY_TIMEOUT_MS = 5000;

const spec = (plan: LocalStackPlan, name: ProcessSpec['name']) => plan.services.find((s) => s.name === name)!;

/** The local plan for a stack file text, on the ports and state dir of the running stack. */
export function localPlanFor(local: RunningLocalStack, text: string, source: string): LocalStackPlan {
  const { topology } = topologyFromStackText(text, source);
  return planLocalStack(topology, { stateDir: local.stateDir, repoDir: REPO_DIR, secrets: local.secrets, ports: local.plan.ports, nginxOpenFileLimit: local.plan.nginxRender.openFileLimit });
}

async function reloadNginx(plan: LocalStackPlan): Promise<{ detail: string; masterPid: number; oldWorkers: number[] }> {
  const st = await serviceState(spec(plan, 'nginx'));
  if (!st.running || st.pid === undefined) throw new ReplyxError('RPX_ROLLBACK_NGINX_DOWN', 'nginx is not running', 'start the stack (npm start) and roll back again');
  // SIGHUP is what `nginx -s reload` sends: the master re-reads the file, starts new workers and
  // lets old ones finish (at most worker_shutdown_timeout).
  const { oldWorkers, reloaded } = await reloadAndWait(st.pid);
  if (!reloaded) throw new ReplyxError('RPX_ROLLBACK_RELOAD', `nginx (pid ${st.pid}) did not start new workers after SIGHUP`, `read ${nginxLogFiles(plan.nginxPrefixDir).error}`);
  return { detail: `SIGHUP to nginx master pid ${st.pid}; new workers serving`, masterPid: st.pid, oldWorkers };
}

/**
 * Makes the gateway drop its clients: SIGTERM makes it stop listening at once and close every
 * client with 4200 spread over its drain window (jitter), exiting by itself afterwards. The new
 * gateway starts on the freed port in the background; verification awaits it.
 */
async function drainGateway(plan: LocalStackPlan): Promise<{ detail: string; started: Promise<number> }> {
  // Every replica drains at once: /ws/ leaves them all together.
  const drained = await Promise.all(
    gatewaySpecs(plan).map(async (gw) => {
      const st = await serviceState(gw);
      await signalStop(gw);
      if (!(await waitUntil(async () => !(await isPortOpen(gw.port)), 5000, 20))) {
        throw new ReplyxError('RPX_ROLLBACK_DRAIN', `the ${gw.name} (pid ${st.pid ?? '?'}) still listens on ${gw.port} after SIGTERM`, `read ${gw.logFile}`);
      }
      return { gw, pid: st.pid };
    }),
  );
  const started = Promise.all(drained.map(({ gw }) => startService(gw))).then((pids) => pids.at(-1)!);
  started.catch(() => undefined);
  return { detail: `${drained.map(({ gw, pid }) => `${gw.name} pid ${pid ?? 'none'}`).join(', ')} closing clients with 4200 over ${plan.topology.gateway.drainWindowMs} ms; new gateway${drained.length > 1 ? 's' : ''} starting`, started };
}

/** Ends nginx's old workers so legacy /ws/ clients of the backend reconnect through the new route. */
async function drainOldNginxWorkers(masterPid: number, oldWorkers: readonly number[]): Promise<string> {
  const ended = await endOldWorkers(masterPid, oldWorkers, 500);
  return ended === 0 ? 'old nginx workers had no connections left' : `ended ${ended} old nginx worker${ended === 1 ? '' : 's'} still holding /ws/ connections to the backend (clients reconnect via the new route)`;
}

async function restartBackend(plan: LocalStackPlan): Promise<string> {
  const lines: string[] = [];
  const pid = await restartPlanService(plan, 'backend', (l) => lines.push(l.trim()));
  return `pid ${pid}, ${plan.topology.backend.workers} worker${plan.topology.backend.workers === 1 ? '' : 's'} (${lines.map((l) => l.replace(/^backend\s+/, '')).join(', ')})`;
}

/** Waits until /ws/ through nginx is answered by the server the plan routes to. */
async function waitForRoute(ctx: StackContext, plan: LocalStackPlan, creds: ProbeCredentials, timeoutMs: number): Promise<string> {
  const want = plan.topology.wsRoute === 'gateway' ? 'ws-gateway' : 'backend';
  let last = '';
  const ok = await waitUntil(
    async () => {
      const r = await wsFirstFrame(`${ctx.endpoints.ws}/ws/dialogs/${DEFAULT_PROBE_DIALOG}`, {}, 1500, tokenProtocols(creds.adminToken ?? ''));
      last = r.ok ? `answered by ${String((r.value as { server?: unknown }).server)}` : r.error;
      return r.ok && (r.value as { server?: unknown }).server === want;
    },
    timeoutMs,
    50,
  );
  if (!ok) throw new ReplyxError('RPX_ROLLBACK_VERIFY', `/ws/ is not answered by ${want}: ${last}`, 'the previous state is being restored; read the nginx and service logs');
  return `/ws/ answered by ${want}`;
}

/** Applies `to` on top of the running `from` (render, validate, swap, reload, drain, restart). */
async function applyPlans(to: LocalStackPlan, plan: RollbackPlan, steps: StepRunner, options: Pick<ApplyOptions, 'transformConfig'>, configText?: string, onChanged: () => void = () => undefined): Promise<{ gatewayStarted?: Promise<number> }> {
  if (plan.restartBackend && plan.workersFirst) {
    onChanged();
    await steps.run('restart backend', () => restartBackend(to));
  }
  let text = '';
  await steps.run('render', async () => {
    text = configText ?? renderNginxConfig(to.topology, 'local', to.nginxRender);
    if (options.transformConfig) text = options.transformConfig(text);
    return `nginx config for wsRoute=${to.topology.wsRoute} (${text.length} bytes)`;
  });
  const next = `${to.nginxConfigFile}.next`;
  await steps.run('validate', async () => {
    await writeFile(next, text);
    try {
      await testNginxConfig(next, to.nginxPrefixDir);
    } catch (err) {
      await rm(next, { force: true });
      throw err;
    }
    return 'nginx -t ok';
  });
  await steps.run('swap', async () => {
    await writeAtomic(to.nginxConfigFile, text);
    await rm(next, { force: true });
    onChanged();
    return `${path.basename(to.nginxConfigFile)} replaced (temp file + rename)`;
  });
  let reload = { masterPid: 0, oldWorkers: [] as number[] };
  await steps.run('reload', async () => {
    const r = await reloadNginx(to);
    reload = r;
    return r.detail;
  });
  let gatewayStarted: Promise<number> | undefined;
  if (plan.drain === 'gateway') {
    await steps.run('drain', async () => {
      const d = await drainGateway(to);
      gatewayStarted = d.started;
      return d.detail;
    });
  }
  // Legacy /ws/ clients sit in backend workers behind old nginx workers; ending those old workers
  // moves them without restarting the backend (which would interrupt /api/).
  if (plan.drain === 'backend') await steps.run('drain', () => drainOldNginxWorkers(reload.masterPid, reload.oldWorkers));
  if (plan.restartBackend && !plan.workersFirst) await steps.run('restart backend', () => restartBackend(to));
  return gatewayStarted ? { gatewayStarted } : {};
}

/** Checks the applied state: health of every service, the route, the worker count, the delivery probe. */
async function verify(ctx: StackContext, to: LocalStackPlan, plan: RollbackPlan, creds: ProbeCredentials, timeoutMs: number, warnings: string[], gatewayStarted?: Promise<number>): Promise<string> {
  const nctx = withTopology(ctx, to.topology);
  // /ws/ on the gateway needs the new gateway before anything else; otherwise it finishes starting meanwhile.
  if (gatewayStarted && to.topology.wsRoute === 'gateway') await gatewayStarted;
  const route = await waitForRoute(nctx, to, creds, timeoutMs);
  const health = await httpJson(`${nctx.endpoints.backend}/health`);
  const workers = health.ok ? (health.value as { workers?: unknown }).workers : undefined;
  if (workers !== to.topology.backend.workers) {
    throw new ReplyxError('RPX_ROLLBACK_VERIFY', `backend reports ${String(workers ?? (health.ok ? '?' : health.error))} workers, expected ${to.topology.backend.workers}`, 'the previous state is being restored; read the backend log');
  }
  // With desync risk the probe is expected to miss: do not wait long for it.
  const probeTimeoutMs = plan.desyncRisk ? 1500 : 4000;
  // With /ws/ on the backend the restarting gateway is off the verified path (the backend
  // publishes through Redis); its return is checked in the last step instead of delaying this one.
  const report = await runHealth(nctx, creds, { timeoutMs: probeTimeoutMs, skipGateway: gatewayStarted !== undefined });
  const bad = report.checks.filter((c) => !c.ok);
  const probeRow = report.checks.find((c) => c.name.startsWith('delivery probe'));
  const probeOnly = bad.length === 1 && bad[0] === probeRow;
  if (bad.length > 0 && !(probeOnly && plan.desyncRisk)) {
    throw new ReplyxError('RPX_ROLLBACK_VERIFY', bad.map((c) => `${c.name}: ${c.detail}`).join('; '), 'the previous state is being restored; read the service logs');
  }
  if (probeOnly && plan.desyncRisk) warnings.push(`probe: ${probeRow!.detail} — expected with /ws/ on ${to.topology.backend.workers} backend workers (desync risk); next: npm run rollback -- --backend-workers 1`);
  const probe = probeRow?.ok ? `, probe ${probeRow.detail}` : plan.desyncRisk ? ', probe missed (desync risk)' : '';
  return `${route}, backend ${String(workers)} workers, all /health ok${probe}`;
}

/**
 * Rolls the local stack from the stack file's current text to `toText`: applies, verifies,
 * persists; on a failure after the swap it restores the previous config and processes and
 * rethrows with what was restored.
 */
export async function applyLocalChange(ctx: StackContext, local: RunningLocalStack, toText: string, change: RollbackChange | 'undo', steps: StepRunner, options: ApplyOptions): Promise<ApplyOutcome> {
  const warnings: string[] = [];
  const from = local.plan;
  let to: LocalStackPlan = from;
  let oldConfig = '';
  let rollbackPlan = planRollback(stateOf(from.topology), stateOf(from.topology));
  await steps.run('record', async () => {
    oldConfig = await readFile(from.nginxConfigFile, 'utf8');
    to = localPlanFor(local, toText, path.basename(ctx.stackFile));
    rollbackPlan = planRollback(stateOf(from.topology), stateOf(to.topology));
    const st = await serviceState(spec(from, 'nginx'));
    return `now wsRoute=${from.topology.wsRoute}, backend workers=${from.topology.backend.workers} (nginx pid ${st.pid ?? 'not running'}); target wsRoute=${to.topology.wsRoute}, workers=${to.topology.backend.workers}`;
  });
  let changed = false;
  let forwardGateway: Promise<number> | undefined;
  try {
    const { gatewayStarted } = await applyPlans(to, rollbackPlan, steps, options, undefined, () => (changed = true));
    forwardGateway = gatewayStarted;
    await steps.run('verify', () => verify(ctx, to, rollbackPlan, options.creds, VERIFY_TIMEOUT_MS, warnings, gatewayStarted));
  } catch (err) {
    if (!changed) throw err;
    // A gateway restarted by the failed attempt must be up before the restore reasons about it.
    await forwardGateway?.catch(() => undefined);
    const reason = err instanceof Error ? err.message : String(err);
    options.print(`  verification failed; restoring wsRoute=${from.topology.wsRoute}, backend workers=${from.topology.backend.workers}`);
    const back = planRollback(stateOf(to.topology), stateOf(from.topology));
    try {
      const { gatewayStarted } = await applyPlans(from, back, steps, {}, oldConfig);
      await steps.run('verify restore', async () => {
        if (gatewayStarted) await gatewayStarted;
        return waitForRoute(ctx, from, options.creds, VERIFY_TIMEOUT_MS);
      });
    } catch (restoreErr) {
      throw new ReplyxError('RPX_ROLLBACK_RESTORE_FAILED', `rollback failed (${reason}) and restoring the previous state failed too: ${(restoreErr as Error).message}`, 'run npm run stack -- restart nginx (and backend/gateway), then npm run check');
    }
    await superviseWith(from);
    throw new ReplyxError('RPX_ROLLBACK_VERIFY_FAILED', `rollback failed and was undone: ${reason}`, 'the previous state is running again and the stack file is unchanged; read the logs, then npm run check', { cause: err });
  }
  const verifiedMs = steps.elapsedMs();
  // From now on a crashed service comes back with the rolled-back settings.
  await superviseWith(to);
  await steps.run('persist', async () => persistStackChange(ctx, toText, change, options.run, warnings, options.hasPulumi));
  if (forwardGateway) {
    const gw = forwardGateway;
    await steps.run('gateway back', async () => {
      try {
        const pid = await gw;
        const h = await httpJson(`${ctx.endpoints.gateway}/health`);
        if (!h.ok) warnings.push(`the restarted gateway (pid ${pid}) is not healthy: ${h.error}; npm run stack -- restart gateway`);
        return `new gateway pid ${pid} ${h.ok ? 'healthy' : 'NOT healthy'}`;
      } catch (err) {
        warnings.push(`the gateway did not start again: ${(err as Error).message}; npm run stack -- restart gateway`);
        return 'gateway did not start (see warning)';
      }
    });
  }
  return { warnings, verifiedMs };
}
