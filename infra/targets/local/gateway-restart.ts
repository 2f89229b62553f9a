import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ReplyxError } from '../../errors.js';
import { writeAtomic } from '../../operate/rollback/history.js';
import { nginxLogFiles, renderNginxConfig } from '../../render/nginx.js';
import { isGatewayProcess } from '../../topology/service-names.js';
import { reloadAndWait } from './nginx-workers.js';
import { MONITORING_SERVICE, planLocalStack, type LocalStackPlan, type ProcessSpec } from './plan.js';
import { canBind, freePort } from './ports.js';
import { stopPid } from './processes.js';
import { pidMatches, processMarker, readPid, serviceState, startService, stopService } from './supervisor.js';

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
  const text = renderNginxConfig(plan.topology, 'local', { prefixDir: plan.nginxPrefixDir, ...(servers ? { gatewayServers: servers } : {}) });
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

/** Where the local stack records the gateway's home port and the port it serves on now (blue/green moves it). */
export const gatewayPortsFile = (stateDir: string) => path.join(stateDir, 'run', 'gateway-ports.json');

/** The gateway's port record: `home` is where it started, `live` where it serves now. */
export interface GatewayPorts {
  readonly home: number;
  readonly live: number;
}

/** Reads the gateway's port record, if a blue/green restart wrote one. */
export async function readGatewayPorts(stateDir: string): Promise<GatewayPorts | undefined> {
  try {
    return JSON.parse(await readFile(gatewayPortsFile(stateDir), 'utf8')) as GatewayPorts;
  } catch {
    return undefined;
  }
}

/** The port the next blue/green restart starts the new gateway on: home and home + 1 take turns (pure). */
export function spareGatewayPort(live: number, home: number): number {
  return live === home ? home + 1 : home;
}

/**
 * Blue/green restart of a single gateway: the new process starts on the spare port beside the old
 * one, nginx (and Prometheus, when it runs) switch to it with a reload, then the old one drains
 * (4200 + jitter) and exits. Nothing is refused: until the reload, the old process serves; after
 * it, the new one. Resolves with the plan on the new port (the caller records it).
 */
export async function blueGreenRestartGateway(plan: LocalStackPlan, log: (line: string) => void): Promise<{ plan: LocalStackPlan; pid: number }> {
  const [old, ...others] = gatewaySpecs(plan);
  if (!old || others.length > 0) throw new ReplyxError('RPX_USAGE', 'a blue/green restart is for a single gateway', 'restart several replicas with npm run stack -- restart gateway (rolling)');
  const recorded = await readGatewayPorts(plan.stateDir);
  const home = recorded?.home ?? old.port;
  let port = spareGatewayPort(old.port, home);
  if (!(await canBind(port))) port = await freePort();
  const next = planLocalStack(plan.topology, { ...plan.options, ports: { ...plan.ports, gateway: port } });
  const fresh = gatewaySpecs(next)[0]!;
  const t0 = Date.now();
  // The old process leaves the pid file (the watchdog then takes its exit as intended); its pid
  // is kept aside so a stop of the stack ends it too, as after an nginx handover.
  const oldPid = await readPid(old.pidFile);
  const oldRunning = oldPid !== undefined && pidMatches(oldPid, processMarker(old));
  if (oldRunning) await writeFile(`${old.pidFile}.handed-over`, `${oldPid}\n`);
  await rm(old.pidFile, { force: true });
  let pid: number;
  try {
    pid = await startService(fresh);
    await reloadWithGatewayServers(next);
  } catch (err) {
    // The old process still serves: give it its pid file back.
    if (oldRunning) await writeFile(old.pidFile, `${oldPid}\n`);
    await rm(`${old.pidFile}.handed-over`, { force: true });
    throw err;
  }
  await writeAtomic(gatewayPortsFile(plan.stateDir), `${JSON.stringify({ home, live: port } satisfies GatewayPorts)}\n`);
  log(`  ${'gateway'.padEnd(11)} pid ${pid} healthy on 127.0.0.1:${port} in ${secs(Date.now() - t0)}; nginx switched to it`);
  const prometheus = next.services.find((s) => s.name === MONITORING_SERVICE);
  const promPid = prometheus ? await readPid(prometheus.pidFile) : undefined;
  if (prometheus && promPid !== undefined && pidMatches(promPid, processMarker(prometheus))) {
    for (const f of prometheus.files ?? []) await writeAtomic(f.path, f.content);
    // SIGHUP makes Prometheus re-read its config: it scrapes the new port from its next scrape on.
    process.kill(promPid, 'SIGHUP');
  }
  if (oldRunning) {
    const t1 = Date.now();
    process.kill(oldPid, 'SIGCONT');
    await stopPid(oldPid, old.stopGraceMs, undefined, 'SIGTERM');
    log(`  ${'gateway'.padEnd(11)} old pid ${oldPid} on 127.0.0.1:${old.port} drained in ${secs(Date.now() - t1)}`);
  }
  await rm(`${old.pidFile}.handed-over`, { force: true });
  return { plan: next, pid };
}
