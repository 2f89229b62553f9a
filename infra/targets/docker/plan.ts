// The Docker target as plain data: what the ReplyxDockerStack component will create, derived
// from the topology alone. Pure (no Pulumi, no I/O) so that every name, env value, port and
// healthcheck is unit-tested here, and the component only turns this plan into resources.
// Secrets never appear in the plan: env values that need one hold a SecretRef, which the
// component resolves to a Pulumi secret Output.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderGrafanaProvisioning } from '../../render/grafana.js';
import { readMonitoringArtefacts, renderPrometheusConfig, type MonitoringArtefacts } from '../../render/prometheus.js';
import { dockerContainerNames } from '../../render/service-hosts.js';
import { containerKernelLimits, type KernelLimits } from '../../render/kernel-limits.js';
import { stopPlans, type StopSignal } from '../../render/deploy-timing.js';
import { renderServiceEnv, resolveServiceEnv, type SettingResolver } from '../../render/service-env.js';
import { REDIS_USERS } from '../../render/redis-acl.js';
import { GATEWAY_DATABASE_ROLE } from '../../../examples/backend/src/migrate.js';
import type { Topology } from '../../topology/index.js';

/** The five services of the stack, and Prometheus and Grafana when monitoring is enabled. */
export type ServiceKey = 'backend' | 'gateway' | 'nginx' | 'redis' | 'postgres' | 'prometheus' | 'grafana';

/** Secrets the Docker target wires into containers (config keys `replyx:<name>`). */
export type SecretName =
  | 'jwtSecret'
  | 'siteTokenSecret'
  | 'widgetTokenSecret'
  | 'postgresPassword'
  | 'publishKey'
  | 'debugToken'
  | 'redisGatewayPassword'
  | 'redisPublisherPassword'
  | 'redisAdminPassword'
  | 'gatewayDatabasePassword';

/** An upload's text: literal, or the Redis ACL file the component renders from the Redis user passwords. */
export type UploadContent = string | { readonly render: 'redisAcl' };

/** Where the Redis ACL file is uploaded in the redis container. */
export const REDIS_ACL_FILE = '/usr/local/etc/redis/users.acl';

// The redis healthcheck: the default user is off, so an unauthenticated PING answers NOAUTH,
// which proves the server serves. Constant script; the port arrives as $1.
const REDIS_PROBE = 'redis-cli -p "$1" ping 2>&1 | grep -qE "PONG|NOAUTH"';

/** An env value that embeds a secret: `prefix + secret + suffix`, the secret URI-encoded if asked. */
export interface SecretRef {
  readonly secret: SecretName;
  readonly prefix?: string;
  readonly suffix?: string;
  /** Encode the secret as a URI component (it sits inside a connection URL). */
  readonly uriEncode?: boolean;
}

/** A plain env value, or one that embeds a secret. */
export type EnvValue = string | SecretRef;

/** An image the stack pulls (pinned by the topology) or builds from this repository. */
export type ImagePlan =
  | { readonly key: ServiceKey; readonly kind: 'remote'; readonly name: string }
  | {
      readonly key: 'backend' | 'gateway';
      readonly kind: 'build';
      /** Local tag given to the built image (never pushed). */
      readonly name: string;
      /** Absolute build context: the repository root, for the root lockfile and workspaces. */
      readonly context: string;
      /** Absolute path of the Dockerfile. */
      readonly dockerfile: string;
    };

/** A Docker healthcheck; durations in seconds. */
export interface HealthcheckPlan {
  /** Docker's test form: `["CMD", argv...]`. */
  readonly test: readonly string[];
  readonly intervalS: number;
  readonly timeoutS: number;
  readonly retries: number;
  readonly startPeriodS: number;
}

/** A named volume or a host directory mounted into a container. */
export type MountPlan =
  | { readonly type: 'volume'; readonly volume: string; readonly target: string }
  | { readonly type: 'bind'; readonly source: string; readonly target: string; readonly readOnly: boolean };

/** One container. */
export interface ContainerPlan {
  /** Which service this container runs. */
  readonly service: ServiceKey;
  /** Container name (`<name>-backend`, `<name>-ws-gateway`, ...; replicas get `-2`, `-3`, ...). */
  readonly name: string;
  /** Key of the image in `DockerStackPlan.images`. */
  readonly image: ServiceKey;
  /** Overrides the image's command; undefined keeps the image's own. */
  readonly command?: readonly string[];
  /** Environment, sorted by name. */
  readonly env: Readonly<Record<string, EnvValue>>;
  /** DNS names on the private network: the service name, shared by its replicas. */
  readonly aliases: readonly string[];
  /** Host ports published; empty for everything but nginx (and Prometheus and Grafana, on the host's loopback only). */
  readonly ports: readonly { readonly internal: number; readonly external: number; readonly ip?: string }[];
  readonly mounts: readonly MountPlan[];
  /** Files written into the container when it is created (rendered configuration). */
  readonly uploads?: readonly { readonly file: string; readonly content: UploadContent }[];
  readonly healthcheck: HealthcheckPlan;
  /**
   * The gateway's and nginx's open-file limit (soft = hard `nofile` ulimit) and net.core.somaxconn
   * sysctl; unset: the Docker daemon's defaults.
   */
  readonly kernelLimits?: KernelLimits;
  readonly restart: 'unless-stopped';
  /**
   * Seconds between the stop signal and SIGKILL, for every stop: `docker stop` and daemon
   * restarts (the container's StopTimeout) and Pulumi replacing or deleting the container (the
   * provider's destroyGraceSeconds; without it the provider force-removes, i.e. SIGKILL at once).
   */
  readonly stopTimeoutS: number;
  readonly stopSignal: StopSignal;
  /** Containers (by service) that must be healthy first. */
  readonly dependsOn: readonly ServiceKey[];
  /**
   * The replica of the same service (container name) this one is replaced after: replicas are
   * chained so a deploy drains and replaces them one at a time while the others keep serving.
   */
  readonly replaceAfter?: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** Where the rendered nginx config lives, on the host and inside the nginx container. */
export interface NginxConfigPlan {
  /** Host directory bind-mounted into the container. */
  readonly hostDir: string;
  /** Host path of the config file nginx is started with. */
  readonly hostFile: string;
  readonly containerDir: string;
  readonly containerFile: string;
}

/** Everything the Docker target creates, as plain data. */
export interface DockerStackPlan {
  readonly network: { readonly name: string; readonly driver: 'bridge' };
  readonly volumes: readonly { readonly key: 'postgres' | 'redis' | 'prometheus'; readonly name: string }[];
  readonly images: readonly ImagePlan[];
  /** Containers in creation order (each after what it depends on). */
  readonly containers: readonly ContainerPlan[];
  readonly nginxConfig: NginxConfigPlan;
  /** The URL users open: nginx on the Docker host. */
  readonly publicUrl: string;
  /** Prometheus and Grafana on the Docker host's loopback, when monitoring is enabled. */
  readonly monitoringUrls?: { readonly prometheus: string; readonly grafana: string };
}

/** Options of {@link planDockerStack}; every one has a documented default. */
export interface DockerPlanOptions {
  /** Repository root (build context); default: the checkout this file lives in. */
  readonly projectRoot?: string;
  /** Host directory for the rendered nginx config; relative paths resolve against projectRoot. Default `.stack/docker/nginx`. */
  readonly stateDir?: string;
  /** Pass `replyx:debugToken` to the gateway as DEBUG_TOKEN. Default false (debug endpoints stay internal-only). */
  readonly debugToken?: boolean;
  /** The alert rules and the dashboard to upload when `monitoring.enabled`. Default: the shipped files (readMonitoringArtefacts). */
  readonly monitoring?: MonitoringArtefacts;
}

/** Where Prometheus keeps its config, rules and data inside its container (the prom/prometheus image's layout). */
export const PROMETHEUS_CONTAINER = { config: '/etc/prometheus/prometheus.yml', rules: '/etc/prometheus/alerts.yml', data: '/prometheus', port: 9090 } as const;
/** Where Grafana reads provisioning and the dashboard inside its container. */
export const GRAFANA_CONTAINER = {
  datasources: '/etc/grafana/provisioning/datasources/replyx.yml',
  dashboards: '/etc/grafana/provisioning/dashboards/replyx.yml',
  dashboardDir: '/var/lib/grafana/dashboards',
  port: 3000,
} as const;

/** Default host directory of the nginx config, relative to the project root. */
export const DEFAULT_NGINX_STATE_DIR = '.stack/docker/nginx';
/** Where the config directory is mounted inside the nginx container. */
export const NGINX_CONTAINER_DIR = '/etc/nginx/replyx';
/** File name of the rendered config in that directory. */
export const NGINX_CONFIG_FILE = 'nginx.conf';
/** Label every container carries with the stack name, for `docker ps --filter`. */
export const STACK_LABEL = 'io.replyx.stack';
/** Label every container carries with its service key. */
export const SERVICE_LABEL = 'io.replyx.service';

const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

// Healthchecks run inside the container, where nothing of ours can be assumed: a user's backend
// image may have curl, wget, python3 or node. The script is constant text; the URL arrives as
// $1, so no value is ever spliced into shell code. Exit 0 only for a 2xx answer.
const HTTP_PROBE =
  'if command -v curl >/dev/null 2>&1; then exec curl -fsS -o /dev/null --max-time 4 "$1"; fi; ' +
  'if command -v wget >/dev/null 2>&1; then exec wget -q -T 4 -O /dev/null "$1"; fi; ' +
  'if command -v python3 >/dev/null 2>&1; then exec python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)" "$1"; fi; ' +
  'exec node -e "fetch(process.argv[1], {signal: AbortSignal.timeout(4000)}).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))" "$1"';

function httpProbe(url: string): readonly string[] {
  return ['CMD', 'sh', '-c', HTTP_PROBE, 'healthcheck', url];
}

function sortedEnv(env: Record<string, EnvValue>): Readonly<Record<string, EnvValue>> {
  return Object.fromEntries(Object.entries(env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Container names of one service: the first carries the service name, replicas get `-2`, `-3`, .... */
export function replicaNames(base: string, replicas: number): string[] {
  return Array.from({ length: replicas }, (_, i) => (i === 0 ? base : `${base}-${i + 1}`));
}


/** Builds the Docker plan for a validated topology (pure). */
export function planDockerStack(topology: Topology, options: DockerPlanOptions = {}): DockerStackPlan {
  const { name } = topology;
  const projectRoot = options.projectRoot ?? PROJECT_ROOT;
  const hostDir = path.resolve(projectRoot, options.stateDir ?? DEFAULT_NGINX_STATE_DIR);
  // Shared with the nginx renderer, so its upstream names and these containers agree.
  const names = dockerContainerNames(topology);
  const host = (service: keyof typeof names) => names[service];

  // The docker values of the rendered settings' references: container names on the private
  // network, and SecretRefs the component resolves to Pulumi secrets.
  const resolver = (container: string): SettingResolver<EnvValue> => (ref) => {
    switch (ref) {
      case 'bindHost':
        return '0.0.0.0';
      case 'databaseUrl':
        return {
          secret: 'postgresPassword',
          prefix: `postgres://${topology.postgres.user}:`,
          suffix: `@${host('postgres')}:${topology.postgres.port}/${topology.postgres.database}`,
          uriEncode: true,
        };
      case 'gatewayDatabaseUrl':
        return {
          secret: 'gatewayDatabasePassword',
          prefix: `postgres://${GATEWAY_DATABASE_ROLE}:`,
          suffix: `@${host('postgres')}:${topology.postgres.port}/${topology.postgres.database}`,
          uriEncode: true,
        };
      case 'gatewayDatabasePassword':
        return { secret: 'gatewayDatabasePassword' };
      case 'redisGatewayUrl':
        return { secret: 'redisGatewayPassword', prefix: `redis://${REDIS_USERS.gateway}:`, suffix: `@${host('redis')}:${topology.redis.port}`, uriEncode: true };
      case 'redisPublisherUrl':
        return { secret: 'redisPublisherPassword', prefix: `redis://${REDIS_USERS.publisher}:`, suffix: `@${host('redis')}:${topology.redis.port}`, uriEncode: true };
      case 'debugToken':
        return options.debugToken ? { secret: 'debugToken' } : undefined;
      case 'jwtSecret':
      case 'siteTokenSecret':
      case 'widgetTokenSecret':
      case 'publishKey':
      case 'postgresPassword':
        return { secret: ref };
      case 'instanceId':
        return container;
      // The docker target's Postgres is on the private network without TLS.
      case 'databaseCaFile':
        return undefined;
    }
  };
  const stops = stopPlans(topology);
  const kernel = containerKernelLimits(topology);
  const envOf = (service: keyof typeof names, container: string) => resolveServiceEnv(renderServiceEnv(topology, service), resolver(container));
  const labels = (service: ServiceKey) => ({ [STACK_LABEL]: name, [SERVICE_LABEL]: service });

  const images: ImagePlan[] = [
    { key: 'postgres', kind: 'remote', name: topology.postgres.image },
    { key: 'redis', kind: 'remote', name: topology.redis.image },
    topology.backend.image !== undefined
      ? { key: 'backend', kind: 'remote', name: topology.backend.image }
      : {
          key: 'backend',
          kind: 'build',
          name: `${name}-backend:local`,
          context: projectRoot,
          dockerfile: path.join(projectRoot, 'examples/backend/Dockerfile'),
        },
    topology.gateway.image !== undefined
      ? { key: 'gateway', kind: 'remote', name: topology.gateway.image }
      : { key: 'gateway', kind: 'build', name: `${name}-ws-gateway:local`, context: projectRoot, dockerfile: path.join(projectRoot, 'gateway/Dockerfile') },
    { key: 'nginx', kind: 'remote', name: topology.nginx.image },
  ];

  const volumes = [
    { key: 'postgres' as const, name: `${name}-postgres-data` },
    { key: 'redis' as const, name: `${name}-redis-data` },
  ];

  const postgres: ContainerPlan = {
    service: 'postgres',
    name: host('postgres'),
    image: 'postgres',
    env: sortedEnv({
      ...envOf('postgres', host('postgres')),
      // A subdirectory of the volume: initdb refuses a non-empty mount point (lost+found).
      PGDATA: '/var/lib/postgresql/data/pgdata',
    }),
    aliases: [host('postgres')],
    ports: [],
    mounts: [{ type: 'volume', volume: volumes[0]!.name, target: '/var/lib/postgresql/data' }],
    healthcheck: {
      test: [
        'CMD',
        'pg_isready',
        '-q',
        '-h',
        '127.0.0.1',
        '-p',
        String(topology.postgres.port),
        '-U',
        topology.postgres.user,
        '-d',
        topology.postgres.database,
      ],
      intervalS: 5,
      timeoutS: 5,
      retries: 12,
      startPeriodS: 30,
    },
    restart: 'unless-stopped',
    // Fast shutdown (SIGINT), see stopPlans.
    stopTimeoutS: stops.postgres.graceS,
    stopSignal: stops.postgres.signal,
    dependsOn: [],
    labels: labels('postgres'),
  };

  const redis: ContainerPlan = {
    service: 'redis',
    name: host('redis'),
    image: 'redis',
    // The rendered server settings, persisted append-only on the volume.
    command: ['redis-server', ...(renderServiceEnv(topology, 'redis').args ?? []), '--appendonly', 'yes', '--dir', '/data', '--aclfile', REDIS_ACL_FILE],
    env: envOf('redis', host('redis')),
    aliases: [host('redis')],
    ports: [],
    mounts: [{ type: 'volume', volume: volumes[1]!.name, target: '/data' }],
    // The stack's users (infra/render/redis-acl.ts), rendered with the generated passwords.
    uploads: [{ file: REDIS_ACL_FILE, content: { render: 'redisAcl' } }],
    healthcheck: {
      test: ['CMD', 'sh', '-c', REDIS_PROBE, 'healthcheck', String(topology.redis.port)],
      intervalS: 5,
      timeoutS: 3,
      retries: 12,
      startPeriodS: 5,
    },
    restart: 'unless-stopped',
    stopTimeoutS: stops.redis.graceS,
    stopSignal: stops.redis.signal,
    dependsOn: [],
    labels: labels('redis'),
  };

  const backendNames = replicaNames(host('backend'), topology.backend.replicas);
  const backends: ContainerPlan[] = backendNames.map((container, i) => ({
    service: 'backend',
    name: container,
    image: 'backend',
    env: envOf('backend', container),
    aliases: [host('backend')],
    ports: [],
    mounts: [],
    healthcheck: {
      test: httpProbe(`http://127.0.0.1:${topology.backend.port}/health`),
      intervalS: 10,
      timeoutS: 5,
      retries: 6,
      // First start runs migrations and the demo seed.
      startPeriodS: 60,
    },
    restart: 'unless-stopped',
    stopTimeoutS: stops.backend.graceS,
    stopSignal: stops.backend.signal,
    dependsOn: ['postgres', 'redis'],
    labels: labels('backend'),
    ...(i > 0 ? { replaceAfter: backendNames[i - 1]! } : {}),
  }));

  const gatewayNames = replicaNames(host('gateway'), topology.gateway.replicas);
  const gateways: ContainerPlan[] = gatewayNames.map((container, i) => ({
    service: 'gateway',
    name: container,
    image: 'gateway',
    env: envOf('gateway', container),
    aliases: [host('gateway')],
    ports: [],
    mounts: [],
    healthcheck: {
      test: httpProbe(`http://127.0.0.1:${topology.gateway.port}/health`),
      intervalS: 10,
      timeoutS: 5,
      retries: 6,
      startPeriodS: 20,
    },
    kernelLimits: kernel.gateway,
    restart: 'unless-stopped',
    // SIGTERM starts the drain (4200 closes spread over drainWindowMs): that long plus a margin.
    stopTimeoutS: stops.gateway.graceS,
    stopSignal: stops.gateway.signal,
    // The gateway reads the access view that the backend's migrations create.
    dependsOn: ['redis', 'postgres', 'backend'],
    labels: labels('gateway'),
    // One replica drains at a time; the others keep the shared alias serving (nginx re-resolves it).
    ...(i > 0 ? { replaceAfter: gatewayNames[i - 1]! } : {}),
  }));

  const containerDir = NGINX_CONTAINER_DIR;
  const containerFile = `${containerDir}/${NGINX_CONFIG_FILE}`;
  const nginx: ContainerPlan = {
    service: 'nginx',
    name: host('nginx'),
    image: 'nginx',
    // The config lives in a mounted directory, so the container spec is the same for every
    // routing; `daemon off` keeps nginx as PID 1 so Docker sees its exit and `nginx -s reload`
    // (and SIGQUIT on stop) reach the master.
    command: ['nginx', '-c', containerFile, '-g', 'daemon off;'],
    env: envOf('nginx', host('nginx')),
    aliases: [host('nginx')],
    ports: [{ internal: topology.nginx.port, external: topology.nginx.port }],
    mounts: [{ type: 'bind', source: hostDir, target: containerDir, readOnly: true }],
    healthcheck: {
      // nginx answers /health itself (rendered config), so this checks nginx, not its upstreams.
      test: httpProbe(`http://127.0.0.1:${topology.nginx.port}/health`),
      intervalS: 10,
      timeoutS: 5,
      retries: 3,
      startPeriodS: 5,
    },
    kernelLimits: kernel.nginx,
    restart: 'unless-stopped',
    // SIGQUIT is nginx's graceful stop: workers finish, WebSockets get worker_shutdown_timeout.
    stopTimeoutS: stops.nginx.graceS,
    stopSignal: stops.nginx.signal,
    // Upstream names are re-resolved at run time (the rendered config's `resolve`), but start
    // after them so the first requests find a serving backend and gateway.
    dependsOn: ['backend', 'gateway'],
    labels: labels('nginx'),
  };

  const monitoring = topology.monitoring.enabled ? planMonitoring(topology, options.monitoring ?? readMonitoringArtefacts(), { backends, gateways, labels, volume: `${name}-prometheus-data` }) : undefined;

  return {
    network: { name: `${name}-net`, driver: 'bridge' },
    volumes: monitoring ? [...volumes, monitoring.volume] : volumes,
    images: monitoring ? [...images, ...monitoring.images] : images,
    containers: [postgres, redis, ...backends, ...gateways, nginx, ...(monitoring?.containers ?? [])],
    ...(monitoring ? { monitoringUrls: monitoring.urls } : {}),
    nginxConfig: { hostDir, hostFile: path.join(hostDir, NGINX_CONFIG_FILE), containerDir, containerFile },
    publicUrl: `http://localhost:${topology.nginx.port}`,
  };
}

/**
 * Prometheus scraping every backend and gateway container by name (replicas are targets of one
 * job, told apart by Prometheus' `instance` label) with the alert rules loaded, and Grafana with
 * the dashboard provisioned; both published on the host's loopback only, Grafana read-only for
 * anonymous viewers (no login, no admin over the API).
 */
function planMonitoring(
  topology: Topology,
  artefacts: MonitoringArtefacts,
  ctx: { backends: readonly ContainerPlan[]; gateways: readonly ContainerPlan[]; labels: (service: ServiceKey) => Record<string, string>; volume: string },
): { containers: ContainerPlan[]; images: ImagePlan[]; volume: { key: 'prometheus'; name: string }; urls: { prometheus: string; grafana: string } } {
  const m = topology.monitoring;
  const prometheusName = `${topology.name}-prometheus`;
  const grafanaName = `${topology.name}-grafana`;
  const target = (c: ContainerPlan, port: number) => `${c.name}:${port}`;
  const prometheusConfig = renderPrometheusConfig(topology, {
    targets: {
      gateway: ctx.gateways.map((c) => target(c, topology.gateway.port)),
      backend: ctx.backends.map((c) => target(c, topology.backend.port)),
      prometheus: `localhost:${PROMETHEUS_CONTAINER.port}`,
    },
    ruleFiles: [PROMETHEUS_CONTAINER.rules],
  });
  const provisioning = renderGrafanaProvisioning(`http://${prometheusName}:${PROMETHEUS_CONTAINER.port}`, GRAFANA_CONTAINER.dashboardDir);
  const dashboardFile = `${GRAFANA_CONTAINER.dashboardDir}/replyx-overview.json`;
  const prometheus: ContainerPlan = {
    service: 'prometheus',
    name: prometheusName,
    image: 'prometheus',
    // The image's entrypoint is prometheus; these are its arguments.
    command: [
      `--config.file=${PROMETHEUS_CONTAINER.config}`,
      `--storage.tsdb.path=${PROMETHEUS_CONTAINER.data}`,
      `--storage.tsdb.retention.time=${m.retentionHours}h`,
      `--web.listen-address=:${PROMETHEUS_CONTAINER.port}`,
      '--log.format=json',
    ],
    env: {},
    aliases: [prometheusName],
    ports: [{ internal: PROMETHEUS_CONTAINER.port, external: m.prometheusPort, ip: '127.0.0.1' }],
    mounts: [{ type: 'volume', volume: ctx.volume, target: PROMETHEUS_CONTAINER.data }],
    uploads: [
      { file: PROMETHEUS_CONTAINER.config, content: prometheusConfig },
      { file: PROMETHEUS_CONTAINER.rules, content: artefacts.alertRules },
    ],
    healthcheck: { test: httpProbe(`http://127.0.0.1:${PROMETHEUS_CONTAINER.port}/-/ready`), intervalS: 10, timeoutS: 5, retries: 6, startPeriodS: 10 },
    restart: 'unless-stopped',
    stopTimeoutS: 30,
    stopSignal: 'SIGTERM',
    dependsOn: ['backend', 'gateway'],
    labels: ctx.labels('prometheus'),
  };
  const grafana: ContainerPlan = {
    service: 'grafana',
    name: grafanaName,
    image: 'grafana',
    env: {
      GF_AUTH_ANONYMOUS_ENABLED: 'true',
      GF_AUTH_ANONYMOUS_ORG_ROLE: 'Viewer',
      GF_AUTH_BASIC_ENABLED: 'false',
      GF_AUTH_DISABLE_LOGIN_FORM: 'true',
      GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH: dashboardFile,
      GF_USERS_VIEWERS_CAN_EDIT: 'true',
    },
    aliases: [grafanaName],
    ports: [{ internal: GRAFANA_CONTAINER.port, external: m.grafanaPort, ip: '127.0.0.1' }],
    mounts: [],
    uploads: [
      { file: GRAFANA_CONTAINER.datasources, content: provisioning.datasources },
      { file: GRAFANA_CONTAINER.dashboards, content: provisioning.dashboards },
      { file: dashboardFile, content: artefacts.dashboard },
    ],
    healthcheck: { test: httpProbe(`http://127.0.0.1:${GRAFANA_CONTAINER.port}/api/health`), intervalS: 10, timeoutS: 5, retries: 6, startPeriodS: 30 },
    restart: 'unless-stopped',
    stopTimeoutS: 30,
    stopSignal: 'SIGTERM',
    dependsOn: ['prometheus'],
    labels: ctx.labels('grafana'),
  };
  return {
    containers: [prometheus, grafana],
    images: [
      { key: 'prometheus', kind: 'remote', name: m.prometheusImage },
      { key: 'grafana', kind: 'remote', name: m.grafanaImage },
    ],
    volume: { key: 'prometheus', name: ctx.volume },
    urls: { prometheus: `http://localhost:${m.prometheusPort}`, grafana: `http://localhost:${m.grafanaPort}` },
  };
}
