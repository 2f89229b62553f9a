import path from 'node:path';
import { validateTopology, type Topology, type TopologyInput } from '../../topology/index.js';
import { SERVICE_NAMES, gatewayReplicaName, gatewayReplicaPorts } from '../../topology/service-names.js';
import { stopPlans } from '../../render/deploy-timing.js';
import { nginxLogFiles, type NginxRenderOptions } from '../../render/nginx.js';
import { ALERT_RULES_FILE, renderPrometheusConfig } from '../../render/prometheus.js';
import { renderServiceEnv, resolveServiceEnv, type SettingResolver } from '../../render/service-env.js';
import { GATEWAY_DATABASE_ROLE } from '../../../examples/backend/src/migrate.js';
import { redisUrlFor, renderRedisAclFile, type RedisPasswords } from '../../render/redis-acl.js';
import { PYTHON_BIN } from '../../python/interpreter.js';
import { nginxArgs, postgresArgs, postgresJsonLog, prometheusArgs, redisArgs } from './processes.js';

// Pure planning of the local stack: from a topology to the processes that run it (argv, env,
// ports, ready probes, logs, pid files, dependency order). The supervisor only executes this.

/** The services of a local stack, in start order. */
export const LOCAL_SERVICES = SERVICE_NAMES;
/** The opt-in monitoring process (`monitoring.enabled` or `npm start -- --monitoring`). */
export const MONITORING_SERVICE = 'prometheus';
/** One process of the local stack: a service (the topology's names), a gateway replica (`gateway-2`, with replicas > 1) or Prometheus. */
export type LocalServiceName = (typeof LOCAL_SERVICES)[number] | `gateway-${number}` | typeof MONITORING_SERVICE;

/** Secrets the local stack generates once (see secrets.ts). */
export interface LocalSecrets {
  readonly jwtSecret: string;
  readonly publishKey: string;
  readonly debugToken: string;
  readonly siteTokenSecret: string;
  readonly widgetTokenSecret: string;
  /** Passwords of the Redis users (infra/render/redis-acl.ts). */
  readonly redisGatewayPassword: string;
  readonly redisPublisherPassword: string;
  readonly redisAdminPassword: string;
  /** Password of the gateway's database role (migration 005; trust auth locally, checked elsewhere). */
  readonly gatewayDatabasePassword: string;
}

/** How the supervisor knows a service is up. */
export type ReadyProbe =
  | { readonly kind: 'http'; readonly url: string }
  | { readonly kind: 'redis-ping'; readonly port: number }
  | { readonly kind: 'postgres'; readonly port: number }
  | { readonly kind: 'tcp'; readonly port: number };

/** Everything needed to run, probe and stop one service. */
export interface ProcessSpec {
  readonly name: LocalServiceName;
  /** The container-style name (`replyx-backend`), used in logs and messages. */
  readonly displayName: string;
  /** Which start routine runs it: OS services need set-up (initdb, nginx -t); node services and Prometheus are started as they are. */
  readonly kind: 'postgres' | 'redis' | 'node' | 'nginx' | 'prometheus';
  /** Program and arguments; argv[0] is the binary name (resolved on PATH) or an absolute path. */
  readonly argv: readonly string[];
  /** Variables set for the process (on top of PATH, HOME, LANG). */
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  readonly port: number;
  /** State directory of the service (data, config). */
  readonly dir: string;
  /** Where the process's stdout and stderr go. */
  readonly logFile: string;
  /** Every log the service writes, what `stack logs` shows (nginx: access and error logs, then its stderr). */
  readonly logFiles: readonly string[];
  /** Files written before the start (rendered configuration). */
  readonly files?: readonly { readonly path: string; readonly content: string }[];
  readonly pidFile: string;
  readonly ready: ReadyProbe;
  readonly readyTimeoutMs: number;
  /** Services that must be healthy first. */
  readonly dependsOn: readonly LocalServiceName[];
  /** Stop-signal grace before SIGKILL; the gateway's includes its drain window. */
  readonly stopGraceMs: number;
  /** The signal that asks for a clean stop (Postgres: SIGINT, its fast shutdown). Default SIGTERM. */
  readonly stopSignal?: 'SIGTERM' | 'SIGINT';
  /**
   * A restart hands over instead of stopping first: this signal makes the old process close its
   * listener and finish what it is serving on its own, while the new one starts at once
   * (nginx: SIGQUIT, its graceful shutdown, bounded by worker_shutdown_timeout).
   */
  readonly handoverSignal?: 'SIGQUIT';
  /**
   * The service announces it is serving with a JSON log line carrying `"ready":true` and its pid
   * (READY_LOG_FIELD): start-up waits for that line (or the probe), not for a probe alone, which
   * load can starve.
   */
  readonly readyLine?: boolean;
}

/** The field a node service sets to true on the log line that says it is serving. */
export const READY_LOG_FIELD = 'ready';

/** The ports of a local stack by service; Prometheus's when monitoring runs. */
export type LocalPorts = Readonly<Record<(typeof LOCAL_SERVICES)[number], number>> & { readonly prometheus?: number };

/** A planned local stack. */
export interface LocalStackPlan {
  /** The topology with the planned ports applied (what nginx is rendered from). */
  readonly topology: Topology;
  readonly stateDir: string;
  readonly ports: LocalPorts;
  readonly services: readonly ProcessSpec[];
  readonly databaseUrl: string;
  /** Redis URL of the admin user (operators and probes; the services get their own users). */
  readonly redisUrl: string;
  readonly urls: { readonly public: string; readonly backend: string; readonly gateway: string; readonly ws: string; readonly prometheus?: string };
  readonly nginxConfigFile: string;
  readonly nginxPrefixDir: string;
  /** How every local render of nginx.conf is made (start, apply, rollback, restart, check): one set, so they agree. */
  readonly nginxRender: NginxRenderOptions & { readonly prefixDir: string };
}

/** Options of `planLocalStack`. */
export interface PlanOptions {
  /** Where data, logs, pid files and rendered config live (`.stack/` for `npm start`). */
  readonly stateDir: string;
  /** Repository root: node services run from here with tsx. */
  readonly repoDir: string;
  readonly secrets: LocalSecrets;
  /** Port overrides by service (tests pass free ports); defaults come from the topology. */
  readonly ports?: Partial<Record<LocalServiceName, number>>;
  /** Node binary for the backend and gateway. Default: the running one. */
  readonly nodePath?: string;
  /** Use this database instead of starting Postgres (tests share the suite's server). */
  readonly externalDatabaseUrl?: string;
  /** Log level of the backend and gateway. Default "info". */
  readonly logLevel?: string;
  /** Run Prometheus whatever `monitoring.enabled` says (`npm start -- --monitoring`). Default: the topology's. */
  readonly monitoring?: boolean;
  /**
   * The hard open-file limit of the nginx master the config is for: the running master's, else
   * the starting process's (planLocalStackForNginx in nginx-limit.ts reads both);
   * worker_rlimit_nofile is rendered at or below it. Unset: unlimited.
   */
  readonly nginxOpenFileLimit?: number;
}

/** The gateway's connection URL: the owner's server and database, as the gateway's role. */
export function gatewayDatabaseUrl(ownerUrl: string, password: string): string {
  const url = new URL(ownerUrl);
  url.username = GATEWAY_DATABASE_ROLE;
  url.password = password;
  return url.toString();
}

/** The stack's ports: overrides first, then the topology's; Prometheus's only when `monitoring`. */
export function portsFor(topology: Topology, overrides: Partial<Record<LocalServiceName, number>> = {}, monitoring = topology.monitoring.enabled): LocalPorts {
  return {
    postgres: overrides.postgres ?? topology.postgres.port,
    redis: overrides.redis ?? topology.redis.port,
    backend: overrides.backend ?? topology.backend.port,
    gateway: overrides.gateway ?? topology.gateway.port,
    nginx: overrides.nginx ?? topology.nginx.port,
    ...(monitoring ? { prometheus: overrides.prometheus ?? topology.monitoring.prometheusPort } : {}),
  };
}

/**
 * Re-validates `topology` with the given ports (and monitoring on when Prometheus has one), so
 * renderers and the unique-ports rule see what actually runs.
 */
export function withPorts(topology: Topology, ports: LocalPorts): Topology {
  const input = structuredClone(topology) as unknown as TopologyInput & Record<string, Record<string, unknown>>;
  input.postgres = { ...input.postgres, port: ports.postgres };
  input.redis = { ...input.redis, port: ports.redis };
  input.backend = { ...input.backend, port: ports.backend };
  input.gateway = { ...input.gateway, port: ports.gateway };
  input.nginx = { ...input.nginx, port: ports.nginx };
  if (ports.prometheus !== undefined) input.monitoring = { ...input.monitoring, enabled: true, prometheusPort: ports.prometheus };
  return validateTopology(input, 'local stack ports').topology;
}

/** Plans every process of the local stack (pure: no I/O). */
export function planLocalStack(topology: Topology, options: PlanOptions): LocalStackPlan {
  const ports = portsFor(topology, options.ports, options.monitoring ?? topology.monitoring.enabled);
  const effective = withPorts(topology, ports);
  // Signals and graces come from the plan every target uses (docker and aws stop with the same).
  const stops = stopPlans(effective);
  const state = path.resolve(options.stateDir);
  const run = path.join(state, 'run');
  const logs = path.join(state, 'logs');
  const node = options.nodePath ?? process.execPath;
  const name = effective.name;
  const databaseUrl = options.externalDatabaseUrl ?? `postgres://${effective.postgres.user}@127.0.0.1:${ports.postgres}/${effective.postgres.database}`;
  const { secrets } = options;
  const redisPasswords: RedisPasswords = { gateway: secrets.redisGatewayPassword, publisher: secrets.redisPublisherPassword, admin: secrets.redisAdminPassword };
  const redisUrl = redisUrlFor('admin', redisPasswords.admin, '127.0.0.1', ports.redis);
  // The local values of the rendered settings' references: loopback, the planned ports, the
  // secrets file; Postgres uses trust auth on loopback, so there is no password.
  const resolve: SettingResolver<string> = (ref) => {
    switch (ref) {
      case 'bindHost':
        return '127.0.0.1';
      case 'databaseUrl':
        return databaseUrl;
      case 'gatewayDatabaseUrl':
        return gatewayDatabaseUrl(databaseUrl, secrets.gatewayDatabasePassword);
      case 'gatewayDatabasePassword':
        return secrets.gatewayDatabasePassword;
      case 'redisGatewayUrl':
        return redisUrlFor('gateway', redisPasswords.gateway, '127.0.0.1', ports.redis);
      case 'redisPublisherUrl':
        return redisUrlFor('publisher', redisPasswords.publisher, '127.0.0.1', ports.redis);
      case 'jwtSecret':
      case 'siteTokenSecret':
      case 'widgetTokenSecret':
      case 'publishKey':
      case 'debugToken':
        return secrets[ref];
      case 'instanceId':
        // Each replica overrides it with its own number (gatewaySpec).
        return `${name}-ws-gateway-1`;
      case 'postgresPassword':
      case 'databaseCaFile':
        return undefined;
    }
  };
  const settings = (service: 'backend' | 'gateway') => renderServiceEnv(effective, service, options.logLevel !== undefined ? { logLevel: options.logLevel } : {});
  const nodeService = (service: 'backend' | 'gateway') => {
    const rendered = settings(service);
    const env = resolveServiceEnv(rendered, resolve);
    // The FastAPI backend prepares its database with the reference backend's Node code first.
    if (rendered.runtime === 'python') return { argv: [PYTHON_BIN, rendered.source!], env: { ...env, REPLYX_NODE: node } };
    return { argv: [node, '--import', 'tsx', rendered.source!], env };
  };
  const pidFile = (svc: LocalServiceName) => path.join(run, `${svc}.pid`);

  const postgresDir = path.join(state, 'postgres');
  const redisDir = path.join(state, 'redis');
  const redisAclFile = path.join(redisDir, 'users.acl');
  const nginxDir = path.join(state, 'nginx');
  const nginxConfigFile = path.join(nginxDir, 'nginx.conf');
  const nginxStderr = path.join(nginxDir, 'logs', 'nginx.stderr.log');
  const nginxLogs = nginxLogFiles(nginxDir);

  const gatewayPorts = gatewayReplicaPorts(effective.gateway);
  const gatewayNames = gatewayPorts.map((_, i) => gatewayReplicaName(i + 1, gatewayPorts.length));
  const gatewayService = nodeService('gateway');
  // Replica i: its own port, pid, logs, state dir and instance id; one replica keeps the plain names.
  const gatewaySpec = (index: number, port: number): ProcessSpec => {
    const svc = gatewayReplicaName(index, gatewayPorts.length);
    return {
      name: svc,
      displayName: `${name}-ws-gateway${gatewayPorts.length === 1 ? '' : `-${index}`}`,
      kind: 'node',
      argv: gatewayService.argv,
      env: { ...gatewayService.env, PORT: String(port), INSTANCE_ID: `${name}-ws-gateway-${index}` },
      cwd: options.repoDir,
      port,
      dir: path.join(state, svc),
      logFile: path.join(logs, `${svc}.log`),
      logFiles: [path.join(logs, `${svc}.log`)],
      pidFile: pidFile(svc),
      ready: { kind: 'http', url: `http://127.0.0.1:${port}/health` },
      readyLine: true,
      readyTimeoutMs: 60_000,
      dependsOn: options.externalDatabaseUrl ? ['redis'] : ['postgres', 'redis'],
      stopGraceMs: stops.gateway.graceS * 1000,
    };
  };

  const services: ProcessSpec[] = [];
  if (!options.externalDatabaseUrl) {
    services.push({
      name: 'postgres',
      displayName: `${name}-postgres`,
      kind: 'postgres',
      argv: ['postgres', ...postgresArgs({ dir: postgresDir, port: ports.postgres })],
      env: { LC_ALL: 'C.UTF-8' },
      cwd: postgresDir,
      port: ports.postgres,
      dir: postgresDir,
      logFile: path.join(postgresDir, 'postgres.log'),
      logFiles: [postgresJsonLog(postgresDir), path.join(postgresDir, 'postgres.log')],
      pidFile: pidFile('postgres'),
      ready: { kind: 'postgres', port: ports.postgres },
      readyTimeoutMs: 60_000,
      dependsOn: [],
      stopGraceMs: stops.postgres.graceS * 1000,
      // SIGTERM is Postgres's smart shutdown, which waits for every client to leave (pools never
      // do); SIGINT is `pg_ctl -m fast`: roll back open transactions, checkpoint, exit.
      stopSignal: 'SIGINT',
    });
  }
  services.push(
    {
      name: 'redis',
      displayName: `${name}-redis`,
      kind: 'redis',
      argv: ['redis-server', ...redisArgs({ dir: redisDir, port: ports.redis, maxmemoryMb: effective.redis.maxmemoryMb, aclFile: redisAclFile })],
      files: [{ path: redisAclFile, content: renderRedisAclFile(redisPasswords) }],
      env: {},
      cwd: redisDir,
      port: ports.redis,
      dir: redisDir,
      logFile: path.join(redisDir, 'redis.log'),
      logFiles: [path.join(redisDir, 'redis.log')],
      pidFile: pidFile('redis'),
      ready: { kind: 'redis-ping', port: ports.redis },
      readyTimeoutMs: 10_000,
      dependsOn: [],
      stopGraceMs: stops.redis.graceS * 1000,
    },
    {
      name: 'backend',
      displayName: `${name}-backend`,
      kind: 'node',
      ...nodeService('backend'),
      cwd: options.repoDir,
      port: ports.backend,
      dir: path.join(state, 'backend'),
      logFile: path.join(logs, 'backend.log'),
      logFiles: [path.join(logs, 'backend.log')],
      pidFile: pidFile('backend'),
      ready: { kind: 'http', url: `http://127.0.0.1:${ports.backend}/health` },
      readyLine: true,
      readyTimeoutMs: 60_000,
      dependsOn: options.externalDatabaseUrl ? ['redis'] : ['postgres', 'redis'],
      // Its workers finish every request they hold (up to the 30 s request timeout) before exiting.
      stopGraceMs: stops.backend.graceS * 1000,
    },
    ...gatewayPorts.map((port, i) => gatewaySpec(i + 1, port)),
    {
      name: 'nginx',
      displayName: `${name}-nginx`,
      kind: 'nginx',
      argv: ['nginx', ...nginxArgs({ dir: nginxDir, configFile: nginxConfigFile })],
      env: {},
      cwd: nginxDir,
      port: ports.nginx,
      dir: nginxDir,
      logFile: nginxStderr,
      logFiles: [nginxLogs.access, nginxLogs.error, nginxStderr],
      pidFile: pidFile('nginx'),
      ready: { kind: 'tcp', port: ports.nginx },
      readyTimeoutMs: 10_000,
      dependsOn: ['backend', ...gatewayNames],
      stopGraceMs: stops.nginx.graceS * 1000,
      // SIGTERM (a stop) cuts requests in flight; a restart lets them finish.
      handoverSignal: 'SIGQUIT',
    },
  );
  if (ports.prometheus !== undefined) {
    const dir = path.join(state, 'prometheus');
    const configFile = path.join(dir, 'prometheus.yml');
    const loopback = (port: number) => `127.0.0.1:${port}`;
    services.push({
      name: MONITORING_SERVICE,
      displayName: `${name}-prometheus`,
      kind: 'prometheus',
      argv: ['prometheus', ...prometheusArgs({ dir, configFile, port: ports.prometheus, retentionHours: effective.monitoring.retentionHours })],
      env: {},
      cwd: dir,
      port: ports.prometheus,
      dir,
      logFile: path.join(logs, 'prometheus.log'),
      logFiles: [path.join(logs, 'prometheus.log')],
      files: [
        {
          path: configFile,
          content: renderPrometheusConfig(effective, {
            targets: { gateway: gatewayPorts.map(loopback), backend: [loopback(ports.backend)], prometheus: loopback(ports.prometheus) },
            ruleFiles: [ALERT_RULES_FILE],
          }),
        },
      ],
      pidFile: pidFile(MONITORING_SERVICE),
      ready: { kind: 'http', url: `http://127.0.0.1:${ports.prometheus}/-/ready` },
      readyTimeoutMs: 30_000,
      // Scrapes what is up; started with nginx so its first scrapes find both services serving.
      dependsOn: ['backend', ...gatewayNames],
      stopGraceMs: 10_000,
    });
  }
  return {
    topology: effective,
    stateDir: state,
    ports,
    services,
    databaseUrl,
    redisUrl,
    urls: {
      public: `http://localhost:${ports.nginx}`,
      backend: `http://localhost:${ports.backend}`,
      gateway: `http://localhost:${ports.gateway}`,
      ws: `ws://localhost:${ports.nginx}`,
      ...(ports.prometheus !== undefined ? { prometheus: `http://localhost:${ports.prometheus}` } : {}),
    },
    nginxConfigFile,
    nginxPrefixDir: nginxDir,
    nginxRender: { prefixDir: nginxDir, openFileLimit: options.nginxOpenFileLimit },
  };
}

/** Services in an order where every dependency comes before its dependants (throws on a cycle). */
export function startOrder(services: readonly ProcessSpec[]): ProcessSpec[] {
  const byName = new Map(services.map((s) => [s.name, s]));
  const done = new Set<LocalServiceName>();
  const visiting = new Set<LocalServiceName>();
  const order: ProcessSpec[] = [];
  const visit = (s: ProcessSpec) => {
    if (done.has(s.name)) return;
    if (visiting.has(s.name)) throw new Error(`dependency cycle at ${s.name}`);
    visiting.add(s.name);
    for (const dep of s.dependsOn) {
      const d = byName.get(dep);
      if (d) visit(d);
    }
    visiting.delete(s.name);
    done.add(s.name);
    order.push(s);
  };
  services.forEach(visit);
  return order;
}

/** Groups services into waves: each wave depends only on earlier waves, so a wave can start in parallel. */
export function startWaves(services: readonly ProcessSpec[]): ProcessSpec[][] {
  const present = new Set(services.map((s) => s.name));
  const level = new Map<LocalServiceName, number>();
  for (const s of startOrder(services)) {
    const deps = s.dependsOn.filter((d) => present.has(d));
    level.set(s.name, deps.length === 0 ? 0 : Math.max(...deps.map((d) => level.get(d)!)) + 1);
  }
  const waves: ProcessSpec[][] = [];
  for (const s of startOrder(services)) (waves[level.get(s.name)!] ??= []).push(s);
  return waves;
}
