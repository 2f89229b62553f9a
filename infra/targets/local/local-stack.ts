import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ReplyxError } from '../../errors.js';
import { REPO_DIR, stateDirFor } from '../../operate/stack.js';
import { buildDemoPages } from '../../../examples/web/build.js';
import { DEMO_PAGES, demoPagesEnabled, renderNginxConfig } from '../../render/nginx.js';
import { loadTopologyFromStackFile, stackFilePath, validateTopology, type Topology, type TopologyInput } from '../../topology/index.js';
import { canonicalServiceName, isGatewayProcess, type ServiceAlias } from '../../topology/service-names.js';
import { demoTokens, type DemoTokens } from './demo-tokens.js';
import { LOCAL_SERVICES, MONITORING_SERVICE, planLocalStack, startOrder, startWaves, type LocalPorts, type ProcessSpec, type LocalSecrets, type LocalServiceName, type LocalStackPlan } from './plan.js';
import { freePortRange, freePorts } from './ports.js';
import { blueGreenRestartGateway, gatewaySpecs, rollingRestartGateways } from './gateway-restart.js';
import { generateSecrets, loadOrCreateSecrets } from './secrets.js';
import { startLogged } from '../../processes/run.js';
import { forNginxStartedHere, planLocalStackForNginx } from './nginx-limit.js';
import { nginxOpenFileLimit, stopPid } from './processes.js';
import { assertPortFree, endLeftover, LEFTOVER_KINDS, handOverService, pidMatches, readPid, serviceState, startService, stopService, type ServiceState } from './supervisor.js';
import { readRestarts, serviceCondition, superviseFile, type ServiceCondition, WATCHDOG_ENTRY, watchdogLogFile, watchdogPidFile, writeSuperviseFile, type RestartRecord } from './watchdog.js';
import type { RunningApplyReport } from './apply.js';

// The local stack as a whole: `npm start`/`npm stop`/status/restart for a developer (state in
// .stack/), and `startLocalStack` for tests (free ports, temp dir). Both go through the same
// plan and supervisor.

export { REPO_DIR, stateDirFor };

/** Receives one progress line. */
export type ProgressLog = (line: string) => void;

/** The state file `npm start` writes. */
export interface StackStateFile {
  readonly stack: string;
  /** Prometheus's port is here when monitoring runs. */
  readonly ports: LocalPorts;
  readonly startedAt: string;
}

const stateFile = (stateDir: string) => path.join(stateDir, 'state.json');

/** What `npm start` recorded in a state directory (ports by service), or undefined when it is not running. */
export async function readStateFile(stateDir: string): Promise<StackStateFile | undefined> {
  let state: StackStateFile;
  try {
    state = JSON.parse(await readFile(stateFile(stateDir), 'utf8')) as StackStateFile;
  } catch {
    return undefined;
  }
  // A stack started before the services took their topology names recorded `ws-gateway`.
  const ports = Object.fromEntries(Object.entries(state.ports ?? {}).map(([name, port]) => [canonicalServiceName(name) ?? name, port])) as LocalPorts;
  return { ...state, ports };
}

/** Writes the rendered nginx config of a plan into its prefix dir, with the demo pages it serves. */
export async function writeNginxConfig(plan: LocalStackPlan): Promise<void> {
  await mkdir(path.join(plan.nginxPrefixDir, 'logs'), { recursive: true });
  if (demoPagesEnabled(plan.topology, 'local')) await buildDemoPages(path.join(plan.nginxPrefixDir, DEMO_PAGES.dir));
  const text = renderNginxConfig(plan.topology, 'local', plan.nginxRender);
  // An unchanged file keeps its mtime: rewriting it would make the check report the config nginx
  // loaded as changed without a reload (npm start on a running stack, to start what crashed).
  if ((await readFile(plan.nginxConfigFile, 'utf8').catch(() => undefined)) === text) return;
  await writeFile(plan.nginxConfigFile, text);
}

/** What the supervisor needs besides a spec to start Postgres and Redis. */
export function startExtras(plan: LocalStackPlan) {
  return { postgresUser: plan.topology.postgres.user, postgresDatabase: plan.topology.postgres.database, redisMaxmemoryMb: plan.topology.redis.maxmemoryMb };
}

const pad = (s: string, n: number) => s.padEnd(n);
const secs = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

/** Tells the watchdog which processes to keep running and how (call whenever the plan changes). */
export async function superviseWith(plan: LocalStackPlan): Promise<void> {
  await writeSuperviseFile(plan.stateDir, { services: plan.services, extras: startExtras(plan) });
}

/** Starts the plan's watchdog (restarts crashed services) unless one already runs; resolves with its pid. */
export async function startWatchdog(plan: LocalStackPlan): Promise<number> {
  await superviseWith(plan);
  const pidFile = watchdogPidFile(plan.stateDir);
  const running = await readPid(pidFile);
  if (running !== undefined && pidMatches(running, WATCHDOG_ENTRY)) return running;
  const logFile = watchdogLogFile(plan.stateDir);
  await mkdir(path.dirname(logFile), { recursive: true });
  const entry = path.join(REPO_DIR, 'infra', 'targets', 'local', WATCHDOG_ENTRY);
  const child = await startLogged([process.execPath, '--import', 'tsx', entry, plan.stateDir], { cwd: REPO_DIR, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' }, logFile, detached: true });
  await mkdir(path.dirname(pidFile), { recursive: true });
  await writeFile(pidFile, `${child.pid}\n`);
  return child.pid;
}

/** Stops the watchdog first, so the services it watches can be stopped without being restarted. */
export async function stopWatchdog(stateDir: string): Promise<void> {
  await rm(superviseFile(stateDir), { force: true });
  const pidFile = watchdogPidFile(stateDir);
  const pid = await readPid(pidFile);
  // Without its supervise file it exits by itself; SIGTERM makes that immediate.
  if (pid !== undefined && pidMatches(pid, WATCHDOG_ENTRY)) await stopPid(pid, 5000);
  await rm(pidFile, { force: true });
}

/** Starts every service of a plan that is not already running; services whose dependencies are healthy start together. */
export async function startPlan(plan: LocalStackPlan, log: ProgressLog): Promise<{ started: LocalServiceName[]; alreadyRunning: LocalServiceName[] }> {
  const started: LocalServiceName[] = [];
  const alreadyRunning: LocalServiceName[] = [];
  await writeNginxConfig(plan);
  const states = new Map(await Promise.all(plan.services.map(async (s) => [s.name, await serviceState(s)] as const)));
  // Check every port before starting anything, so a taken port does not leave half a stack.
  for (const spec of plan.services) if (!states.get(spec.name)!.running) await assertPortFree(spec);
  for (const wave of startWaves(plan.services)) {
    const results = await Promise.allSettled(
      wave.map(async (spec) => {
        const state = states.get(spec.name)!;
        if (state.running) {
          alreadyRunning.push(spec.name);
          log(`  ${pad(spec.name, 11)} already running  pid ${state.pid}  127.0.0.1:${spec.port}${state.healthy ? '' : '  (not healthy: see logs)'}`);
          return;
        }
        const t0 = Date.now();
        const pid = await startService(spec, startExtras(plan));
        started.push(spec.name);
        const note = spec.name === 'backend' ? `  ${plan.topology.backend.workers} worker${plan.topology.backend.workers === 1 ? '' : 's'}` : '';
        log(`  ${pad(spec.name, 11)} healthy in ${pad(secs(Date.now() - t0), 6)} pid ${pid}  127.0.0.1:${spec.port}${note}`);
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
  const watchdog = await startWatchdog(plan);
  log(`  ${pad('watchdog', 11)} pid ${watchdog}  restarts crashed services (log: ${path.relative(process.cwd(), watchdogLogFile(plan.stateDir)) || watchdogLogFile(plan.stateDir)})`);
  return { started, alreadyRunning };
}

/** Stops every service of a plan in reverse dependency order. */
export async function stopPlan(plan: LocalStackPlan, log: ProgressLog): Promise<LocalServiceName[]> {
  const stopped: LocalServiceName[] = [];
  await stopWatchdog(plan.stateDir);
  for (const spec of startOrder(plan.services).reverse()) {
    const t0 = Date.now();
    // What a restart cut short left beside the service: a handed-over nginx or gateway, a gateway's stand-in.
    if (spec.handoverSignal) await endLeftover(spec, 'handed-over');
    if (isGatewayProcess(spec.name)) for (const kind of LEFTOVER_KINDS) await endLeftover(spec, kind);
    const pid = await stopService(spec);
    if (pid !== undefined) {
      stopped.push(spec.name);
      log(`  ${pad(spec.name, 11)} stopped in ${secs(Date.now() - t0)}  (pid ${pid})`);
    } else {
      log(`  ${pad(spec.name, 11)} not running`);
    }
  }
  return stopped;
}

/**
 * Restarts one service of a plan: SIGTERM (the gateway drains its clients first), then start.
 * The gateway is replaced without refusing a handshake: replicas one at a time (rolling), a
 * single one blue/green through a stand-in on a spare port.
 */
export async function restartPlanService(plan: LocalStackPlan, name: LocalServiceName, log: ProgressLog): Promise<number> {
  // `gateway` names every replica: they are replaced one at a time behind nginx; `gateway-2` only that one.
  if (isGatewayProcess(name) && gatewaySpecs(plan).length > 1) {
    if (await readPid(watchdogPidFile(plan.stateDir))) await superviseWith(plan);
    return (await rollingRestartGateways(plan, log, name === 'gateway' ? undefined : name)).at(-1)!;
  }
  // With /ws/ on the backend nothing routes to the gateway: an in-place restart refuses no handshake.
  if (name === 'gateway' && plan.topology.wsRoute === 'gateway') {
    if (await readPid(watchdogPidFile(plan.stateDir))) await superviseWith(plan);
    return blueGreenRestartGateway(plan, log);
  }
  const spec = plan.services.find((s) => s.name === name);
  if (!spec) throw new ReplyxError('RPX_UNKNOWN_SERVICE', `no service "${name}" in this stack`, `use one of: ${plan.services.map((s) => s.name).join(', ')}`);
  // A crash of the new process must be restarted with the new settings.
  if (await readPid(watchdogPidFile(plan.stateDir))) await superviseWith(plan);
  const t0 = Date.now();
  const old = spec.handoverSignal ? await handOverService(spec, spec.handoverSignal) : await stopService(spec);
  log(`  ${pad(name, 11)} ${old !== undefined ? `${spec.handoverSignal ? 'handed over by' : 'stopped'} pid ${old} in ${secs(Date.now() - t0)}` : 'was not running'}`);
  // The new master inherits this process's open-file limit, whatever the old one had.
  if (name === 'nginx') await writeNginxConfig(forNginxStartedHere(plan));
  const t1 = Date.now();
  const pid = await startService(spec, startExtras(plan));
  log(`  ${pad(name, 11)} healthy in ${secs(Date.now() - t1)}  pid ${pid}`);
  return pid;
}

/** How a developer's stack is chosen: a `Pulumi.<stack>.yaml` in the repo and a state dir. */
export interface DevStackOptions {
  readonly stack?: string;
  /** The sources the node services run from. Default: this checkout. */
  readonly repoDir?: string;
  /** Where the stack file (and, by default, `.stack/`) live. Default: repoDir. */
  readonly projectDir?: string;
  readonly stateDir?: string;
  /** `npm start -- --monitoring`: run Prometheus whatever `monitoring.enabled` says. */
  readonly monitoring?: boolean;
}

/** The state directory of a developer's stack: the one given, else `.stack/` next to its stack file. */
function devStateDir(opts: DevStackOptions): string {
  return stateDirFor({ ...opts, projectDir: opts.projectDir ?? opts.repoDir ?? REPO_DIR });
}

/** Loads the stack file, secrets and (if running) the recorded ports, and plans the stack. */
export async function loadDevPlan(opts: DevStackOptions, log?: ProgressLog): Promise<{ plan: LocalStackPlan; secrets: LocalSecrets; stackFile: string; running: boolean }> {
  const repoDir = opts.repoDir ?? REPO_DIR;
  const projectDir = opts.projectDir ?? repoDir;
  const stateDir = devStateDir(opts);
  const stack = opts.stack ?? 'local';
  const stackFile = stackFilePath(projectDir, stack);
  const { topology, warnings } = await loadTopologyFromStackFile(stackFile);
  if (topology.target !== 'local') {
    throw new ReplyxError('RPX_NOT_LOCAL_TARGET', `${path.basename(stackFile)} has target "${topology.target}", not "local"`, 'pass --stack local (or a stack file with replyx:target: local)');
  }
  for (const w of warnings) log?.(`warning ${w.rule ?? ''} ${w.path}: ${w.message}`);
  const secrets = await loadOrCreateSecrets(stateDir);
  const recorded = await readStateFile(stateDir);
  // A stack started with --monitoring keeps Prometheus in its plan (status, logs, stop) until it is stopped.
  const monitoring = opts.monitoring === true || recorded?.ports.prometheus !== undefined || topology.monitoring.enabled;
  const plan = await planLocalStackForNginx(topology, { stateDir, repoDir, secrets, ports: recorded?.ports, monitoring });
  return { plan, secrets, stackFile, running: recorded !== undefined };
}

/**
 * Applies the stack file to a running local stack and reads the values back: the one path behind
 * `npm start` on a running stack and `npm run stack -- apply` (a route or worker change goes
 * through the rollback's path; RPX_DEPLOY_NOT_APPLIED names any setting still not live).
 */
export async function applyPlanToRunningStack(opts: DevStackOptions, plan: LocalStackPlan, secrets: LocalSecrets, log: ProgressLog): Promise<RunningApplyReport> {
  const { applyToRunningStack } = await import('./apply.js');
  const { resolveContext } = await import('../../operate/stack.js');
  const ctx = await resolveContext({ stack: opts.stack ?? 'local', 'project-dir': opts.projectDir ?? opts.repoDir ?? REPO_DIR, 'state-dir': devStateDir(opts) });
  return applyToRunningStack(ctx, plan, secrets, log);
}

/** `npm start`: starts what is not running and records the ports; resolves with the plan. */
export async function upDevStack(opts: DevStackOptions, log: ProgressLog): Promise<LocalStackPlan> {
  const stateDir = devStateDir(opts);
  await mkdir(stateDir, { recursive: true });
  // Postgres runs as the postgres user and must be able to walk into .stack/.
  await chmod(stateDir, 0o755);
  const { plan, secrets, stackFile } = await loadDevPlan(opts, log);
  log(`replyx local stack from ${path.basename(stackFile)} (wsRoute=${plan.topology.wsRoute}, backend workers=${plan.topology.backend.workers}); state in ${path.relative(process.cwd(), stateDir) || '.'}/`);
  const t0 = Date.now();
  const running = (await Promise.all(plan.services.map((s) => serviceState(s)))).filter((s) => s.running);
  const recordState = () => writeFile(stateFile(stateDir), `${JSON.stringify({ stack: opts.stack ?? 'local', ports: plan.ports, startedAt: new Date().toISOString() } satisfies StackStateFile, null, 2)}\n`);
  if (running.length > 0) {
    // A running stack gets the stack file applied, not just "already running": a changed
    // setting that nobody restarted for is the deploy that silently did nothing.
    log(`  ${running.map((s) => s.name).join(', ')} already running: applying ${path.basename(stackFile)} to the running stack`);
    const report = await applyPlanToRunningStack(opts, plan, secrets, log);
    const watchdog = await startWatchdog(plan);
    await recordState();
    log(`  ${pad('watchdog', 11)} pid ${watchdog}  restarts crashed services with the applied settings`);
    log(report.actions.length === 0 ? `Nothing to change: the running stack runs ${path.basename(stackFile)}; verified live: ${report.verified}.` : `Applied ${report.actions.length} change${report.actions.length === 1 ? '' : 's'} to the running stack in ${secs(Date.now() - t0)}; verified live: ${report.verified}.`);
    return plan;
  }
  await startPlan(plan, log);
  await recordState();
  log(`All ${plan.services.length} services healthy in ${secs(Date.now() - t0)}.`);
  return plan;
}

/** `npm stop`: stops every service, nginx first. */
export async function downDevStack(opts: DevStackOptions, log: ProgressLog): Promise<void> {
  const stateDir = devStateDir(opts);
  const { plan } = await loadDevPlan(opts);
  await stopPlan(plan, log);
  await rm(stateFile(stateDir), { force: true });
}

/** One service as `stack status` shows it. */
export type DevServiceStatus = ServiceState & { logFile: string; logFiles: readonly string[]; restarts: number; lastRestartError?: string; state: ServiceCondition; recovery?: string };

/** The state of every service of the developer's stack, with the command that recovers each one that is not healthy. */
export async function devStackStatus(opts: DevStackOptions): Promise<{ plan: LocalStackPlan; watchdog: number | undefined; services: DevServiceStatus[] }> {
  const { plan } = await loadDevPlan(opts);
  const records: Record<string, RestartRecord> = await readRestarts(plan.stateDir);
  const wd = await readPid(watchdogPidFile(plan.stateDir));
  const watchdog = wd !== undefined && pidMatches(wd, WATCHDOG_ENTRY) ? wd : undefined;
  const observed = await Promise.all(startOrder(plan.services).map(async (s) => ({ spec: s, state: await serviceState(s), pidFilePresent: (await readPid(s.pidFile)) !== undefined })));
  const STORES = ['postgres', 'redis'];
  const conditionOf = (o: (typeof observed)[number], storeDown?: { name: string; state: ServiceCondition }) =>
    serviceCondition({ ...o.state, pidFilePresent: o.pidFilePresent, record: records[o.spec.name], watchdogRunning: watchdog !== undefined, ...(storeDown ? { storeDown } : {}) });
  const storeDown = observed.filter((o) => STORES.includes(o.spec.name) && !o.state.healthy).map((o) => ({ name: o.spec.name, state: conditionOf(o).state }))[0];
  const services = observed.map((o) => {
    const record = records[o.spec.name];
    return {
      ...o.state,
      logFile: o.spec.logFile,
      logFiles: o.spec.logFiles,
      restarts: record?.restarts ?? 0,
      ...(record?.lastError ? { lastRestartError: record.lastError } : {}),
      ...conditionOf(o, STORES.includes(o.spec.name) || o.spec.name === 'nginx' ? undefined : storeDown),
    };
  });
  return { plan, watchdog, services };
}

/** Where a service of a plan answers (nginx: the public URL; Prometheus: its UI; Postgres: the database URL), if it has one. */
export function serviceUrl(plan: LocalStackPlan, name: string): string | undefined {
  // Postgres's is the database URL itself, so runbooks can hand it to psql (local trust auth: no password in it).
  const urls: Partial<Record<string, string>> = { nginx: plan.urls.public, backend: plan.urls.backend, gateway: plan.urls.gateway, prometheus: plan.urls.prometheus, postgres: plan.databaseUrl };
  return urls[name];
}

/** Options of `startLocalStack` (tests and tools). */
export interface StartLocalStackOptions {
  /** Topology keys to set on top of the defaults (target is always local). */
  readonly topology?: TopologyInput;
  /** State directory; default a fresh temp dir, removed by `stop()`. */
  readonly dir?: string;
  /** `'free'` (default) picks free ports; an object fixes some; `'topology'` uses the topology's. */
  readonly ports?: 'free' | 'topology' | Partial<Record<LocalServiceName, number>>;
  /** Use this Postgres database instead of starting a Postgres (e.g. the test suite's). */
  readonly databaseUrl?: string;
  /** Log level of backend and gateway. Default "info". */
  readonly logLevel?: string;
  /** Run Prometheus too (on a free port like the rest). Default: the topology's monitoring.enabled. */
  readonly monitoring?: boolean;
  readonly log?: ProgressLog;
}

/** A running stack started by `startLocalStack`. */
export interface LocalStackHandle {
  readonly plan: LocalStackPlan;
  readonly topology: Topology;
  readonly ports: LocalPorts;
  readonly urls: LocalStackPlan['urls'];
  readonly secrets: LocalSecrets;
  readonly tokens: DemoTokens;
  readonly dir: string;
  /** Log file of a service (gateway logs carry `WEBSOCKET_4003_ERROR` etc.); aliases such as `ws-gateway` work too. */
  logFile(name: LocalServiceName | ServiceAlias): string;
  /** Every log file of a service (nginx: access, error, stderr). */
  logFiles(name: LocalServiceName | ServiceAlias): readonly string[];
  /** Restarts one service; the gateway drains (4200) before it stops. */
  restart(name: LocalServiceName | ServiceAlias): Promise<void>;
  /** Stops everything and removes the temp dir (if it created one). */
  stop(): Promise<void>;
}

/** The canonical name of a service or alias of the local stack (`prometheus` included). */
function localServiceName(name: LocalServiceName | ServiceAlias): LocalServiceName {
  return name === MONITORING_SERVICE || /^gateway-\d+$/.test(name) ? (name as LocalServiceName) : canonicalServiceName(name)!;
}

function specsOf(plan: LocalStackPlan, name: LocalServiceName | ServiceAlias): ProcessSpec[] {
  const canonical = localServiceName(name);
  // `gateway` names every replica when there are several.
  return canonical === 'gateway' ? gatewaySpecs(plan) : plan.services.filter((s) => s.name === canonical);
}

const liveStacks = new Set<LocalStackPlan>();
const pidsByFile = new Map<string, number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort if a test process exits without stop(): do not leave servers behind.
  process.on('exit', () => {
    for (const plan of liveStacks) {
      const wd = pidsByFile.get(watchdogPidFile(plan.stateDir));
      try {
        if (wd !== undefined) process.kill(wd, 'SIGKILL');
      } catch {
        // Already gone.
      }
      for (const spec of plan.services) {
        try {
          const pid = pidsByFile.get(spec.pidFile);
          if (pid !== undefined) process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
  });
}


/** Starts a whole local stack on free ports in a temp dir and returns a handle to restart or stop it. */
export async function startLocalStack(options: StartLocalStackOptions = {}): Promise<LocalStackHandle> {
  try {
    return await startLocalStackOnce(options);
  } catch (err) {
    // Free ports are chosen before the services bind them; another process (a parallel test
    // file) can take one in between. That race deserves one more try with fresh ports.
    if ((options.ports === undefined || options.ports === 'free') && (err as { code?: string }).code === 'RPX_PORT_TAKEN') return startLocalStackOnce(options);
    throw err;
  }
}

async function startLocalStackOnce(options: StartLocalStackOptions): Promise<LocalStackHandle> {
  const log = options.log ?? (() => undefined);
  const { topology } = validateTopology({ ...options.topology, target: 'local' }, 'startLocalStack');
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'replyx-stack-')));
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  const secrets = generateSecrets();
  let ports: Partial<Record<LocalServiceName, number>> | undefined;
  const monitoring = options.monitoring ?? topology.monitoring.enabled;
  if (options.ports === undefined || options.ports === 'free') {
    const names: LocalServiceName[] = monitoring ? [...LOCAL_SERVICES, MONITORING_SERVICE] : [...LOCAL_SERVICES];
    const free = await freePorts(names.length);
    ports = Object.fromEntries(names.map((s, i) => [s, free[i]!]));
    // Replicas listen on consecutive ports from the gateway's.
    if (topology.gateway.replicas > 1) ports.gateway = await freePortRange(topology.gateway.replicas, free);
  } else if (options.ports !== 'topology') {
    ports = options.ports;
  }
  let plan: LocalStackPlan;
  try {
    plan = planLocalStack(topology, { stateDir: dir, repoDir: REPO_DIR, secrets, ports, externalDatabaseUrl: options.databaseUrl, logLevel: options.logLevel, monitoring, nginxOpenFileLimit: nginxOpenFileLimit() });
  } catch (err) {
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw err;
  }
  liveStacks.add(plan);
  installExitHook();
  const remember = async () => {
    for (const s of plan.services) {
      const st = await serviceState(s);
      if (st.pid !== undefined) pidsByFile.set(s.pidFile, st.pid);
    }
    const wd = await readPid(watchdogPidFile(plan.stateDir));
    if (wd !== undefined) pidsByFile.set(watchdogPidFile(plan.stateDir), wd);
  };
  const stop = async () => {
    await stopPlan(plan, log);
    liveStacks.delete(plan);
    if (ownDir) await rm(dir, { recursive: true, force: true });
  };
  try {
    await startPlan(plan, log);
    await remember();
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  const tokens = await demoTokens(secrets, { nginx: plan.ports.nginx, backend: plan.ports.backend, gateway: plan.ports.gateway });
  return {
    plan,
    topology: plan.topology,
    ports: plan.ports,
    urls: plan.urls,
    secrets,
    tokens,
    dir,
    logFile: (name) => specsOf(plan, name)[0]?.logFile ?? '',
    logFiles: (name) => specsOf(plan, name).flatMap((s) => s.logFiles),
    async restart(name) {
      await restartPlanService(plan, localServiceName(name), log);
      await remember();
    },
    stop,
  };
}
