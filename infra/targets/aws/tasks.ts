import { ReplyxError } from '../../errors.js';
import { FARGATE_MAX_STOP_TIMEOUT_S, fargateStopCapOverruns, stopPlans } from '../../render/deploy-timing.js';
import { containerKernelLimits, type KernelLimits } from '../../render/kernel-limits.js';
import { renderServiceEnv, resolveServiceEnv, settingRefsOf, type SettingRef } from '../../render/service-env.js';
import type { Topology } from '../../topology/index.js';

/** The ECS services of the stack (Redis and Postgres are managed services, not tasks). */
export const AWS_SERVICES = ['backend', 'gateway', 'nginx'] as const;
export type AwsServiceName = (typeof AWS_SERVICES)[number];

/** Container (and Cloud Map service) name of each ECS service, matching the docker target's names. */
export const CONTAINER_NAMES: Readonly<Record<AwsServiceName, string>> = { backend: 'backend', gateway: 'ws-gateway', nginx: 'nginx' };

/** The Secrets Manager secrets the stack keeps; each task reads only the ones it needs. */
export type StackSecretName = 'databaseUrl' | 'gatewayDatabaseUrl' | 'gatewayDatabasePassword' | 'redisUrl' | 'jwtSecret' | 'siteTokenSecret' | 'widgetTokenSecret' | 'publishKey' | 'debugToken';

/** ARNs of the stack's secrets; `debugToken` exists only when `replyx:debugToken` is set. */
export type SecretArns = Readonly<Record<Exclude<StackSecretName, 'debugToken'>, string>> & { readonly debugToken?: string };

/** Everything a task definition refers to that only exists once resources are created. */
export interface TaskRefs {
  readonly images: Readonly<Record<AwsServiceName, string>>;
  readonly region: string;
  readonly logGroups: Readonly<Record<AwsServiceName, string>>;
  readonly secrets: SecretArns;
  /** The nginx config text: `renderNginxConfig(topology, 'aws')`. */
  readonly nginxConfig: string;
}

/** The subset of an ECS container definition this target uses (field names as in the ECS API). */
export interface ContainerDefinition {
  readonly name: string;
  readonly image: string;
  readonly essential: true;
  readonly portMappings: readonly { readonly containerPort: number; readonly protocol: 'tcp'; readonly name: string }[];
  readonly environment: readonly { readonly name: string; readonly value: string }[];
  readonly secrets: readonly { readonly name: string; readonly valueFrom: string }[];
  readonly entryPoint?: readonly string[];
  readonly command?: readonly string[];
  readonly healthCheck: { readonly command: readonly string[]; readonly interval: number; readonly timeout: number; readonly retries: number; readonly startPeriod: number };
  readonly logConfiguration: { readonly logDriver: 'awslogs'; readonly options: Readonly<Record<string, string>> };
  readonly stopTimeout: number;
  readonly ulimits: readonly { readonly name: 'nofile'; readonly softLimit: number; readonly hardLimit: number }[];
  /** Namespaced sysctls (Fargate allows net.*): net.core.somaxconn for the services that take reconnect storms. */
  readonly systemControls?: readonly { readonly namespace: 'net.core.somaxconn'; readonly value: string }[];
}

/** One task definition: Fargate size and its single container (the family comes from planNames). */
export interface TaskPlan {
  readonly cpu: string;
  readonly memory: string;
  readonly containerDefinitions: readonly ContainerDefinition[];
}

/** Where the gateway and backend images put the RDS CA bundle (their Dockerfiles). */
export const RDS_CA_BUNDLE_FILE = '/etc/ssl/certs/rds-global-bundle.pem';

/** Rendered refs that reach AWS tasks through Secrets Manager, and the secret holding each. */
const SECRET_OF_REF: Partial<Record<SettingRef, StackSecretName>> = {
  databaseUrl: 'databaseUrl',
  gatewayDatabaseUrl: 'gatewayDatabaseUrl',
  gatewayDatabasePassword: 'gatewayDatabasePassword',
  // One ElastiCache auth token for both until the stack creates RBAC users there (docs/aws.md).
  redisGatewayUrl: 'redisUrl',
  redisPublisherUrl: 'redisUrl',
  jwtSecret: 'jwtSecret',
  siteTokenSecret: 'siteTokenSecret',
  widgetTokenSecret: 'widgetTokenSecret',
  publishKey: 'publishKey',
  debugToken: 'debugToken',
};

/** The AWS value of a plain (non-secret) rendered ref; undefined leaves the variable out. */
function plainValueOf(ref: SettingRef): string | undefined {
  switch (ref) {
    case 'bindHost':
      return '0.0.0.0';
    // ECS cannot name a task in its definition: the gateway falls back to hostname-pid, unique per task.
    case 'instanceId':
      return undefined;
    // The RDS CA bundle the gateway and backend images carry: DATABASE_URL says sslmode=verify-full.
    case 'databaseCaFile':
      return RDS_CA_BUNDLE_FILE;
    default:
      throw new Error(`the aws target has no value for ${ref}`);
  }
}

/**
 * Which secret each service reads, under which env var: the rendered settings' secret refs
 * (so the execution role grants exactly what the task definition references).
 */
export function secretEnvFor(topology: Topology, service: AwsServiceName, secrets: { readonly debugToken?: unknown }): readonly { readonly env: string; readonly secret: StackSecretName }[] {
  return settingRefsOf(renderServiceEnv(topology, service)).flatMap(({ env, ref }) => {
    const secret = SECRET_OF_REF[ref];
    if (secret === undefined || (secret === 'debugToken' && secrets.debugToken === undefined)) return [];
    return [{ env, secret }];
  });
}

/** The rendered settings of a service split the ECS way: plain `environment` and `secrets` (valueFrom ARNs). */
export function awsContainerEnv(topology: Topology, service: AwsServiceName, secrets: SecretArns): Pick<ContainerDefinition, 'environment' | 'secrets'> {
  const settings = renderServiceEnv(topology, service);
  const plain = resolveServiceEnv(settings, (ref) => (SECRET_OF_REF[ref] === undefined ? plainValueOf(ref) : undefined));
  return {
    environment: Object.entries(plain).map(([name, value]) => ({ name, value })),
    secrets: secretEnvFor(topology, service, secrets).map(({ env: name, secret }) => {
      const arn = secrets[secret];
      if (arn === undefined) throw new Error(`secret ${secret} has no ARN`);
      return { name, valueFrom: arn };
    }),
  };
}

/**
 * The container health probe: exits 0 only for a 2xx answer from the URL in $1, using
 * whichever client the image has (curl, busybox wget in nginx:alpine, python3 in Python
 * backends, node in ours). Constant text: the URL is an argument, never spliced into the script.
 */
export const HEALTH_PROBE_SCRIPT = [
  'if command -v curl >/dev/null 2>&1; then exec curl -fsS -o /dev/null --max-time 4 "$1"; fi',
  'if command -v wget >/dev/null 2>&1; then exec wget -q -T 4 -O /dev/null "$1"; fi',
  'if command -v python3 >/dev/null 2>&1; then exec python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)" "$1"; fi',
  'exec node -e "fetch(process.argv[1], {signal: AbortSignal.timeout(4000)}).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))" "$1"',
].join('; ');

/** The ECS health check command for a container listening on `port` (GET /health on loopback). */
export function healthCheckCommand(port: number): readonly string[] {
  return ['CMD', 'sh', '-c', HEALTH_PROBE_SCRIPT, 'healthcheck', `http://127.0.0.1:${port}/health`];
}

/** Where the nginx container writes its config before starting. */
export const NGINX_CONFIG_PATH = '/etc/nginx/nginx.conf';

/**
 * How the nginx container gets its config: the rendered text travels in the NGINX_CONF
 * variable of the task definition, and the container writes it to disk, checks it with
 * `nginx -t` and only then starts nginx in the foreground. A config change is therefore a new
 * task definition revision: a rolling deployment guarded by the circuit breaker, where a bad
 * config fails `nginx -t`, the new tasks never pass health checks, and ECS rolls back.
 * ECS stops a container with SIGTERM whatever the image's STOPSIGNAL says, and SIGTERM is
 * nginx's fast stop, which cuts every proxied WebSocket and request at once. So the shell stays
 * as PID 1 and turns SIGTERM into SIGQUIT, nginx's graceful stop: in-flight requests finish and
 * WebSockets get worker_shutdown_timeout (the task's stopTimeout covers it, deploy-timing.ts).
 * The script is constant text around a checked plain path; the config itself travels in an
 * environment variable and never passes through the shell's parser.
 */
export function nginxStartScript(configPath: string = NGINX_CONFIG_PATH): string {
  if (!/^\/[A-Za-z0-9._/-]+$/.test(configPath)) throw new Error(`nginx config path must be a plain absolute path: ${JSON.stringify(configPath)}`);
  return [
    `printf '%s' "$NGINX_CONF" > ${configPath} && nginx -t -q -c ${configPath} || exit 1`,
    // Set before nginx starts, so no stop request is missed; nginx itself gets default handlers.
    `pid=''; trap 'kill -QUIT "$pid" 2>/dev/null' TERM INT QUIT`,
    `nginx -c ${configPath} -g 'daemon off;' & pid=$!`,
    // `wait` returns early when a trapped signal arrives: keep waiting until nginx has exited.
    `wait "$pid"; status=$?`,
    `while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done`,
    `exit "$status"`,
  ].join('\n');
}

/** The start script the nginx task runs (config at {@link NGINX_CONFIG_PATH}). */
export const NGINX_START_SCRIPT = nginxStartScript();

/** Fargate's per-task ceiling for open files. */
const FARGATE_MAX_NOFILE = 1_048_576;

/**
 * The open-file limit every task gets at least: Fargate's own default is a soft limit of 1,024
 * (hard 65,535), too low for a backend's pool and keepalive sockets; a service that needs more
 * gets its {@link containerKernelLimits} figure.
 */
const MIN_TASK_NOFILE = 65_536;

function nofile(limit: number): ContainerDefinition['ulimits'] {
  const n = Math.min(FARGATE_MAX_NOFILE, Math.max(MIN_TASK_NOFILE, limit));
  return [{ name: 'nofile', softLimit: n, hardLimit: n }];
}

/** A service's kernel limits as container-definition fields. */
function kernelLimits(limits: KernelLimits): Pick<ContainerDefinition, 'ulimits' | 'systemControls'> {
  return { ulimits: nofile(limits.nofile), systemControls: [{ namespace: 'net.core.somaxconn', value: String(limits.somaxconn) }] };
}

function env(vars: Readonly<Record<string, string>>): ContainerDefinition['environment'] {
  return Object.entries(vars)
    .map(([name, value]) => ({ name, value }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Seconds ECS waits after the stop signal before SIGKILL: the service's stop grace
 * (deploy-timing.ts): the gateway's drain window plus a margin, nginx's worker_shutdown_timeout
 * plus a margin, the backend's request grace. Fargate caps stopTimeout at 120 s and would cut a
 * longer drain silently, so a grace above the cap is refused (validation refuses it first, rule
 * stop-timeout-covers-drain).
 */
export function stopTimeoutFor(topology: Topology, service: AwsServiceName): number {
  const grace = stopPlans(topology)[service].graceS;
  if (grace > FARGATE_MAX_STOP_TIMEOUT_S) {
    const overrun = fargateStopCapOverruns(topology).find((o) => o.service === service);
    throw new ReplyxError(
      'RPX_TOPOLOGY_INVALID',
      `the ${service} needs ${grace} s to stop but Fargate stops a container after at most ${FARGATE_MAX_STOP_TIMEOUT_S} s`,
      overrun ? `set ${overrun.path} to ${overrun.largest} or less in the stack file` : `lower the ${service}'s stop grace to ${FARGATE_MAX_STOP_TIMEOUT_S} s`,
    );
  }
  return grace;
}

/** Seconds a new task may take to become healthy before failed checks count (migrations run on backend start). */
export const HEALTH_START_PERIOD_S: Readonly<Record<AwsServiceName, number>> = { backend: 90, gateway: 30, nginx: 15 };

/**
 * Plans the three task definitions (pure): images, ports, the rendered service settings
 * (plain values as `environment`, secrets from Secrets Manager), health checks, awslogs config
 * and nginx's rendered config.
 */
export function planTaskDefinitions(topology: Topology, refs: TaskRefs): Readonly<Record<AwsServiceName, TaskPlan>> {
  const logs = (service: AwsServiceName): ContainerDefinition['logConfiguration'] => ({
    logDriver: 'awslogs',
    options: { 'awslogs-group': refs.logGroups[service], 'awslogs-region': refs.region, 'awslogs-stream-prefix': CONTAINER_NAMES[service] },
  });
  const healthCheck = (service: AwsServiceName, port: number): ContainerDefinition['healthCheck'] => ({
    command: healthCheckCommand(port),
    interval: 15,
    timeout: 5,
    retries: 3,
    startPeriod: HEALTH_START_PERIOD_S[service],
  });
  const container = (service: AwsServiceName, port: number, vars: Readonly<Record<string, string>>, extra: Partial<ContainerDefinition>): ContainerDefinition => {
    const rendered = awsContainerEnv(topology, service, refs.secrets);
    return {
      name: CONTAINER_NAMES[service],
      image: refs.images[service],
      essential: true,
      portMappings: [{ containerPort: port, protocol: 'tcp', name: 'http' }],
      environment: env({ PORT: String(port), ...Object.fromEntries(rendered.environment.map((e) => [e.name, e.value])), ...vars }),
      secrets: rendered.secrets,
      healthCheck: healthCheck(service, port),
      logConfiguration: logs(service),
      stopTimeout: stopTimeoutFor(topology, service),
      ulimits: nofile(MIN_TASK_NOFILE),
      ...extra,
    };
  };
  const task = (definition: ContainerDefinition): TaskPlan => ({
    cpu: String(topology.aws.taskCpu),
    memory: String(topology.aws.taskMemoryMb),
    containerDefinitions: [definition],
  });
  const kernel = containerKernelLimits(topology);
  return {
    backend: task(container('backend', topology.backend.port, {}, {})),
    gateway: task(container('gateway', topology.gateway.port, {}, kernelLimits(kernel.gateway))),
    nginx: task(
      container(
        'nginx',
        topology.nginx.port,
        { NGINX_CONF: refs.nginxConfig },
        {
          // Replaces the image's entrypoint so its template/envsubst scripts cannot touch our config.
          entryPoint: ['/bin/sh', '-c'],
          command: [NGINX_START_SCRIPT],
          ...kernelLimits(kernel.nginx),
        },
      ),
    ),
  };
}
