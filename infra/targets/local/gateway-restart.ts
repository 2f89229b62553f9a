import { rm, writeFile } from 'node:fs/promises';
import { ReplyxError } from '../../errors.js';
import { writeAtomic } from '../../operate/rollback/history.js';
import { nginxLogFiles, renderNginxConfig } from '../../render/nginx.js';
import { isGatewayProcess } from '../../topology/service-names.js';
import { reloadAndWait } from './nginx-workers.js';
import type { LocalStackPlan, ProcessSpec } from './plan.js';
import { canBind, freePort } from './ports.js';
import { endLeftover, handOverService, leftoverPidFile, pidMatches, processMarker, readPid, serviceState, startService, stopService } from './supervisor.js';

// Zero-downtime restart of the gateway replicas on the local target: nginx stops sending new
// handshakes to a replica before it drains, so a reconnecting client always meets a listening
// replica and no handshake is answered 502.

/** The gateway processes of a plan, replica 1 first. */
export function gatewaySpecs(plan: LocalStackPlan): ProcessSpec[] {
  return plan.services.filter((s) => isGatewayProcess(s.name));
}

/** One step of a rolling restart: the upstream while replica `replica` is replaced, and while its old process drains. */
export interface RollingStep {
  readonly replica: string;
  /**
   * While it is replaced: the replica marked down, and so is every replica still to be replaced
   * in this restart, once one is new. A client that reconnects late from the previous drain then
   * lands on a new process, not on one that is replaced next (which would move it twice).
   */
  readonly servers: readonly { readonly port: number; readonly down?: boolean }[];
  /** While its old process drains: only the replica (its new process) up, so each drained client moves once, to it. */
  readonly drainTo: readonly { readonly port: number; readonly down?: boolean }[];
}

/** The upstreams a rolling restart of every replica, or of `only` that one, renders, in order (pure). */
export function rollingRestartSteps(gateways: readonly Pick<ProcessSpec, 'name' | 'port'>[], only?: string): RollingStep[] {
  const replaced = gateways.filter((g) => only === undefined || g.name === only);
  return replaced.map((g, i) => {
    const stillOld = new Set(replaced.slice(i).map((o) => o.name));
    // The first replica of a full restart has no new process beside it: the old ones take new handshakes.
    const takesHandshakes = (o: Pick<ProcessSpec, 'name'>) => o.name !== g.name && (i === 0 || !stillOld.has(o.name));
    return {
      replica: g.name,
      servers: gateways.map((o) => (takesHandshakes(o) ? { port: o.port } : { port: o.port, down: true })),
      drainTo: gateways.map((o) => (o.name === g.name ? { port: o.port } : { port: o.port, down: true })),
    };
  });
}

/** Renders the plan's nginx config with `servers` as the gateway upstream, swaps it in and reloads nginx (SIGHUP); resolves once new workers serve. */
async function reloadWithGatewayServers(plan: LocalStackPlan, servers?: RollingStep['servers']): Promise<void> {
  const text = renderNginxConfig(plan.topology, 'local', { ...plan.nginxRender, ...(servers ? { gatewayServers: servers } : {}) });
  await writeAtomic(plan.nginxConfigFile, text);
  const nginx = plan.services.find((s) => s.name === 'nginx')!;
  const st = await serviceState(nginx);
  if (!st.running || st.pid === undefined) throw new ReplyxError('RPX_GATEWAY_RESTART_NGINX', 'nginx is not running, so gateway replicas cannot leave and rejoin its upstream', 'start the stack (npm start), then restart the gateway again');
  const { reloaded } = await reloadAndWait(st.pid);
  if (!reloaded) throw new ReplyxError('RPX_GATEWAY_RESTART_NGINX', `nginx (pid ${st.pid}) did not start new workers after SIGHUP`, `read ${nginxLogFiles(plan.nginxPrefixDir).error}, then run npm run stack -- restart gateway again`);
}

const secs = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

/** The signal that makes a gateway close its listener for a successor and keep its clients (gateway/src/main.ts). */
const GATEWAY_HANDOVER_SIGNAL = 'SIGUSR2';

/** The upstreams one gateway process is replaced behind. */
interface Replacement {
  /** While it is replaced: the upstream that takes new handshakes without it. */
  readonly away: RollingStep['servers'];
  /** Once the new process serves: the upstream its old process's clients reconnect through (unset: the plan's own). */
  readonly drainTo?: RollingStep['servers'];
  /** Who serves its clients when the new process does not come up, for the error. */
  readonly fallback: string;
  /** Undoes the caller's preparation (a stand-in) when the restart fails while the old process still holds the port. */
  readonly abort?: () => Promise<unknown>;
}

/**
 * Replaces one gateway process behind nginx so that its clients move once: nginx switches to
 * `away`, the old process hands over its port (SIGUSR2: listener closed, clients kept), the new
 * one starts on it and nginx switches to `drainTo`. The old process still holds its clients: the
 * caller drains it (endLeftover 'handed-over') when the new one should take them. Before the
 * handover it fails as is, with nginx back on the plan's upstream and `abort` run; after it, nginx
 * stays on `away`, the old process drains there and RPX_GATEWAY_RESTART_FAILED says who serves.
 */
async function replaceGatewayProcess(plan: LocalStackPlan, spec: ProcessSpec, r: Replacement, log: (line: string) => void): Promise<number> {
  try {
    const t0 = Date.now();
    await reloadWithGatewayServers(plan, r.away);
    const old = await handOverService(spec, GATEWAY_HANDOVER_SIGNAL);
    log(`  ${spec.name.padEnd(11)} ${old !== undefined ? `pid ${old} let go of 127.0.0.1:${spec.port} in ${secs(Date.now() - t0)}; its clients stay on it for now` : 'was not running'}`);
  } catch (err) {
    await reloadWithGatewayServers(plan).catch(() => undefined);
    await r.abort?.().catch(() => undefined);
    throw err;
  }
  try {
    const t1 = Date.now();
    const pid = await startService(spec);
    await reloadWithGatewayServers(plan, r.drainTo);
    log(`  ${spec.name.padEnd(11)} healthy in ${secs(Date.now() - t1)}  pid ${pid} on 127.0.0.1:${spec.port}; nginx sends it new handshakes`);
    return pid;
  } catch (err) {
    await reloadWithGatewayServers(plan, r.away).catch(() => undefined);
    await endLeftover(spec, 'handed-over').catch(() => undefined);
    if (err instanceof ReplyxError && err.code === 'RPX_GATEWAY_RESTART_NGINX') throw err;
    throw new ReplyxError(
      'RPX_GATEWAY_RESTART_FAILED',
      `${spec.name} did not start again on 127.0.0.1:${spec.port} (${err instanceof Error ? err.message : String(err)}); ${r.fallback}`,
      `fix what the gateway log names, then run npm run stack -- restart ${spec.name} again`,
    );
  }
}

/**
 * Restarts every gateway replica, one at a time, moving each client once: the replica leaves
 * nginx's upstream and is replaced (replaceGatewayProcess), and nginx sends new handshakes to it
 * alone while its old process drains (4200 + jitter), so its clients reconnect straight to the new
 * process rather than to a replica that is replaced next. The next replica then leaves with the
 * replicas still to be replaced, so new handshakes meet new processes only; at the end every
 * replica is up again. `only` restarts that one replica (`gateway-2`) the same way.
 */
export async function rollingRestartGateways(plan: LocalStackPlan, log: (line: string) => void, only?: string): Promise<number[]> {
  const gateways = gatewaySpecs(plan);
  if (gateways.length < 2) throw new ReplyxError('RPX_USAGE', 'a rolling restart needs at least 2 gateway replicas', 'set gateway.replicas to 2 or more in the stack file');
  const steps = rollingRestartSteps(gateways, only);
  if (steps.length === 0) throw new ReplyxError('RPX_UNKNOWN_SERVICE', `no gateway replica "${only}" in this stack`, `use one of: gateway, ${gateways.map((g) => g.name).join(', ')}`);
  const pids: number[] = [];
  for (const [i, step] of steps.entries()) {
    const spec = gateways.find((g) => g.name === step.replica)!;
    const fallback = "the other replicas took its clients and it stays out of nginx's upstream";
    pids.push(await replaceGatewayProcess(plan, spec, { away: step.servers, drainTo: step.drainTo, fallback }, log));
    const t0 = Date.now();
    const drained = await endLeftover(spec, 'handed-over');
    const last = i === steps.length - 1;
    // Between replicas nginx goes straight to the next step's upstream, which holds new processes only.
    if (last) await reloadWithGatewayServers(plan);
    log(`  ${step.replica.padEnd(11)} ${drained !== undefined ? `old pid ${drained} drained to it in ${secs(Date.now() - t0)}; ` : ''}${last ? 'every replica back in the upstream' : 'the next replica leaves the upstream'}`);
  }
  return pids;
}

/** The process that takes a single gateway's new handshakes while it is replaced: the same gateway on `port`, its pid kept where a stop of the stack finds it (pure). */
export function standInSpec(gateway: ProcessSpec, port: number): ProcessSpec {
  return {
    ...gateway,
    port,
    // Its own instance id, so its clients, logs and /api/debug/websocket/status tell it from the gateway it stands in for.
    env: { ...gateway.env, PORT: String(port), ...(gateway.env.INSTANCE_ID !== undefined ? { INSTANCE_ID: `${gateway.env.INSTANCE_ID}-stand-in` } : {}) },
    ready: { kind: 'http', url: `http://127.0.0.1:${port}/health` },
    // stopPlan ends a process recorded here; the watchdog never looks at it.
    pidFile: leftoverPidFile(gateway, 'stand-in'),
  };
}

/**
 * Blue/green restart of a single gateway that moves each client once and keeps the gateway's
 * port. A stand-in starts on a spare port and nginx switches to it, so new handshakes always meet
 * a listener. The old process hands over its port (SIGUSR2: its listener closes, its clients
 * stay), the new process starts on the gateway's port and nginx switches back. Only then do the
 * old process and the stand-in drain (4200 + jitter): their clients reconnect straight to the
 * new process, resuming with since=. The port every command, runbook and Prometheus knows stays
 * the stack file's.
 */
export async function blueGreenRestartGateway(plan: LocalStackPlan, log: (line: string) => void): Promise<number> {
  const [gateway, ...others] = gatewaySpecs(plan);
  if (!gateway || others.length > 0) throw new ReplyxError('RPX_USAGE', 'a blue/green restart is for a single gateway', 'restart several replicas with npm run stack -- restart gateway (rolling)');
  await setAsideEarlierStandIn(gateway);
  const spare = (await canBind(gateway.port + 1)) ? gateway.port + 1 : await freePort();
  const standIn = standInSpec(gateway, spare);
  const t0 = Date.now();
  const standInPid = await startService(standIn);
  log(`  ${'gateway'.padEnd(11)} stand-in pid ${standInPid} healthy on 127.0.0.1:${spare} in ${secs(Date.now() - t0)}; nginx switches to it`);
  const pid = await replaceGatewayProcess(
    plan,
    gateway,
    {
      away: [{ port: spare }],
      fallback: `the stand-in (pid ${standInPid}, 127.0.0.1:${spare}) serves /ws/ meanwhile, and the next restart moves its clients to the new process`,
      // While the old process still listens, the stand-in is not left running; after, it is the one gateway that does.
      abort: () => stopService(standIn),
    },
    log,
  );
  const t1 = Date.now();
  const [drained] = await Promise.all([endLeftover(gateway, 'handed-over'), stopService(standIn), endLeftover(gateway, 'earlier-stand-in')]);
  log(`  ${'gateway'.padEnd(11)} ${drained !== undefined ? `old pid ${drained} and ` : ''}stand-in pid ${standInPid} drained to it in ${secs(Date.now() - t1)}`);
  return pid;
}

/** A stand-in left by a restart cut short goes on serving its clients until this restart's new process takes them. */
async function setAsideEarlierStandIn(gateway: ProcessSpec): Promise<void> {
  const pid = await readPid(leftoverPidFile(gateway, 'stand-in'));
  if (pid === undefined || !pidMatches(pid, processMarker(gateway))) return;
  await writeFile(leftoverPidFile(gateway, 'earlier-stand-in'), `${pid}\n`);
  await rm(leftoverPidFile(gateway, 'stand-in'), { force: true });
}
