import { ReplyxError } from '../../errors.js';
import { writeAtomic } from '../../operate/rollback/history.js';
import { nginxLogFiles, renderNginxConfig } from '../../render/nginx.js';
import { isGatewayProcess } from '../../topology/service-names.js';
import { reloadAndWait } from './nginx-workers.js';
import type { LocalStackPlan, ProcessSpec } from './plan.js';
import { canBind, freePort } from './ports.js';
import { serviceState, startService, stopService } from './supervisor.js';

// Zero-downtime restart of the gateway replicas on the local target: nginx stops sending new
// handshakes to a replica before it drains, so a reconnecting client always meets a listening
// replica and no handshake is answered 502.

/** The gateway processes of a plan, replica 1 first. */
export function gatewaySpecs(plan: LocalStackPlan): ProcessSpec[] {
  return plan.services.filter((s) => isGatewayProcess(s.name));
}

/** One step of a rolling restart: which replica's port the nginx upstream marks down (none: all up). */
export interface RollingStep {
  readonly replica: string;
  readonly servers: readonly { readonly port: number; readonly down?: boolean }[];
}

/** The upstreams a rolling restart renders, in order: replica i marked down while it is replaced (pure). */
export function rollingRestartSteps(gateways: readonly Pick<ProcessSpec, 'name' | 'port'>[]): RollingStep[] {
  return gateways.map((g) => ({ replica: g.name, servers: gateways.map((o) => (o.name === g.name ? { port: o.port, down: true } : { port: o.port })) }));
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

/**
 * Restarts every gateway replica, one at a time: it leaves nginx's upstream (marked down, reload),
 * drains its clients with 4200 over its drain window (they reconnect to the replicas still up),
 * is started again, answers /health, and rejoins the upstream before the next one leaves.
 * `only` restarts that one replica (`gateway-2`) the same way.
 */
export async function rollingRestartGateways(plan: LocalStackPlan, log: (line: string) => void, only?: string): Promise<number[]> {
  const gateways = gatewaySpecs(plan);
  if (gateways.length < 2) throw new ReplyxError('RPX_USAGE', 'a rolling restart needs at least 2 gateway replicas', 'set gateway.replicas to 2 or more in the stack file');
  const steps = rollingRestartSteps(gateways).filter((s) => only === undefined || s.replica === only);
  if (steps.length === 0) throw new ReplyxError('RPX_UNKNOWN_SERVICE', `no gateway replica "${only}" in this stack`, `use one of: gateway, ${gateways.map((g) => g.name).join(', ')}`);
  const pids: number[] = [];
  try {
    for (const step of steps) {
      const spec = gateways.find((g) => g.name === step.replica)!;
      const t0 = Date.now();
      await reloadWithGatewayServers(plan, step.servers);
      const old = await stopService(spec);
      log(`  ${step.replica.padEnd(11)} left the upstream and ${old !== undefined ? `drained pid ${old}` : 'was not running'} in ${secs(Date.now() - t0)}`);
      const t1 = Date.now();
      const pid = await startService(spec);
      await reloadWithGatewayServers(plan);
      log(`  ${step.replica.padEnd(11)} healthy in ${secs(Date.now() - t1)}  pid ${pid}, back in the upstream`);
      pids.push(pid);
    }
  } catch (err) {
    // Whatever failed, nginx must not keep a replica marked down.
    await reloadWithGatewayServers(plan).catch(() => undefined);
    throw err;
  }
  return pids;
}

/** The process that carries a single gateway's clients while it is replaced: the same gateway on `port`, its pid kept where a stop of the stack finds it (pure). */
export function standInSpec(gateway: ProcessSpec, port: number): ProcessSpec {
  return {
    ...gateway,
    port,
    // Its own instance id, so its clients, logs and /api/debug/websocket/status tell it from the gateway it stands in for.
    env: { ...gateway.env, PORT: String(port), ...(gateway.env.INSTANCE_ID !== undefined ? { INSTANCE_ID: `${gateway.env.INSTANCE_ID}-stand-in` } : {}) },
    ready: { kind: 'http', url: `http://127.0.0.1:${port}/health` },
    // stopPlan ends a process recorded here (as after an nginx handover); the watchdog never looks at it.
    pidFile: `${gateway.pidFile}.handed-over`,
  };
}

/**
 * Blue/green restart of a single gateway, on its own port: a stand-in process starts on a spare
 * port beside the old one and nginx switches to it (reload); the old process drains (4200 +
 * jitter) while its clients reconnect to the stand-in; the new process starts on the gateway's
 * port, nginx switches back, and the stand-in drains to it. At every moment a gateway listens
 * behind the upstream, so no handshake is refused, and the port every command, runbook and
 * Prometheus knows stays the stack file's. Clients reconnect twice, resuming with since= each time.
 */
export async function blueGreenRestartGateway(plan: LocalStackPlan, log: (line: string) => void): Promise<number> {
  const [gateway, ...others] = gatewaySpecs(plan);
  if (!gateway || others.length > 0) throw new ReplyxError('RPX_USAGE', 'a blue/green restart is for a single gateway', 'restart several replicas with npm run stack -- restart gateway (rolling)');
  const spare = (await canBind(gateway.port + 1)) ? gateway.port + 1 : await freePort();
  const standIn = standInSpec(gateway, spare);
  const t0 = Date.now();
  const standInPid = await startService(standIn);
  try {
    await reloadWithGatewayServers(plan, [{ port: spare }]);
    log(`  ${'gateway'.padEnd(11)} stand-in pid ${standInPid} healthy on 127.0.0.1:${spare} in ${secs(Date.now() - t0)}; nginx switched to it`);
    const t1 = Date.now();
    const old = await stopService(gateway);
    log(`  ${'gateway'.padEnd(11)} ${old !== undefined ? `drained pid ${old}` : 'was not running'} in ${secs(Date.now() - t1)}`);
    const t2 = Date.now();
    const pid = await startService(gateway);
    await reloadWithGatewayServers(plan);
    log(`  ${'gateway'.padEnd(11)} healthy in ${secs(Date.now() - t2)}  pid ${pid} on 127.0.0.1:${gateway.port}; nginx switched back`);
    const t3 = Date.now();
    await stopService(standIn);
    log(`  ${'gateway'.padEnd(11)} stand-in pid ${standInPid} drained in ${secs(Date.now() - t3)}`);
    return pid;
  } catch (err) {
    // Whatever failed, nginx goes back to the gateway's own port, and the stand-in is not left running.
    await reloadWithGatewayServers(plan).catch(() => undefined);
    await stopService(standIn).catch(() => undefined);
    throw err;
  }
}
