import { dnsStalenessS, fargateStopCapOverruns, FARGATE_MAX_STOP_TIMEOUT_S, gatewayDrainS, stopPlans, STOP_MARGIN_S } from '../render/deploy-timing.js';
import type { ServiceName, Topology } from '../topology/schema.js';
import type { RuleIdReading } from './catalog.js';

// The facts behind the rules that read the topology, as plain predicates over values. Topology
// validation, the check's static rows and the policy pack (which reads the same values from the
// resources a deploy declares) call these, so each fact is written once.

/** One thing a topology rule found, named by the stack-file path to change. */
export interface TopologyFinding {
  readonly path: string;
  readonly message: string;
}

/** single-gateway-or-broker: several gateway processes only share events through the Redis broker. */
export function gatewaysNeedBroker(processes: number, broker: string | undefined): boolean {
  return processes > 1 && broker !== 'redis';
}

/** What single-gateway-or-broker says; `brokerSetting` names where the broker was read (`gateway.broker is "memory"`, `BROKER=memory`). */
export function gatewaysWithoutBrokerMessage(processes: number, brokerSetting: string): string {
  return `${processes} replicas need the Redis broker: ${processes} gateway processes but ${brokerSetting}, so events published to one never reach clients of another`;
}

/** desync-risk: /ws/ served by a backend whose workers each hold their own connections. */
export function desyncRisk(wsRoute: string | undefined, backendWorkers: number): boolean {
  return wsRoute === 'backend' && backendWorkers > 1;
}

/** What desync-risk says. */
export function desyncRiskMessage(backendWorkers: number): string {
  return `desync risk: /ws/ is served by the backend with ${backendWorkers} workers, each holding its own connections`;
}

/** An idle timeout in front of the gateway that its heartbeat must stay under. */
export interface IdleTimeout {
  /** The stack-file setting that sets it. */
  readonly setting: string;
  readonly label: string;
  readonly seconds: number;
  /** The path a validation issue names: the value an operator would change first. */
  readonly changeFirst: string;
}

/** The load balancer's idle timeout (aws), as set or as a deploy declares it. */
export function albIdleTimeout(seconds: number): IdleTimeout {
  return { setting: 'aws.albIdleTimeoutS', label: 'load balancer idle timeout', seconds, changeFirst: 'aws.albIdleTimeoutS' };
}

/** The idle timeouts of a topology: nginx's /ws/ read timeout, and the load balancer's on aws. */
export function idleTimeoutsOf(t: Topology): IdleTimeout[] {
  const nginx: IdleTimeout = { setting: 'nginx.proxyReadTimeoutS', label: 'nginx read timeout', seconds: t.nginx.proxyReadTimeoutS, changeFirst: 'gateway.heartbeatMs' };
  return t.target === 'aws' ? [nginx, albIdleTimeout(t.aws.albIdleTimeoutS)] : [nginx];
}

/** heartbeat-vs-timeouts: the idle timeouts a heartbeat does not stay under (each would cut idle WebSockets). */
export function idleTimeoutsCutBy(heartbeatMs: number, timeouts: readonly IdleTimeout[]): IdleTimeout[] {
  return timeouts.filter((t) => heartbeatMs >= t.seconds * 1000);
}

/** What heartbeat-vs-timeouts says about the timeouts that cut. */
export function heartbeatMessage(heartbeatMs: number, cut: readonly IdleTimeout[]): string {
  return `heartbeat ${heartbeatMs / 1000} s is not shorter than ${cut.map((t) => `the ${t.label} ${t.seconds} s (${t.setting})`).join(' and ')}: idle WebSockets get cut`;
}

/** backend-kind: why a topology cannot run its backend kind (the FastAPI example is built by no target but local). */
export function backendKindFindings(t: Topology): TopologyFinding[] {
  if (t.backend.kind !== 'fastapi' || t.target === 'local' || t.backend.image !== undefined) return [];
  return [{ path: 'backend.kind', message: `backend.kind "fastapi" without backend.image on the ${t.target} target, which builds only examples/backend` }];
}

/** The stack-file path of each service's port. */
export const SERVICE_PORT_PATHS: Readonly<Record<ServiceName, string>> = {
  nginx: 'nginx.port',
  backend: 'backend.port',
  gateway: 'gateway.port',
  redis: 'redis.port',
  postgres: 'postgres.port',
};

/** Every port the stack listens on with its stack-file path: the services', then monitoring's when it is enabled. */
export function portSettings(t: Topology): { readonly owner: string; readonly path: string; readonly port: number }[] {
  const services = (Object.keys(SERVICE_PORT_PATHS) as ServiceName[]).map((service) => ({ owner: service, path: SERVICE_PORT_PATHS[service], port: t[service].port }));
  if (!t.monitoring.enabled) return services;
  const monitoring = [{ owner: 'prometheus', path: 'monitoring.prometheusPort', port: t.monitoring.prometheusPort }];
  // Grafana runs on the docker target only.
  if (t.target === 'docker') monitoring.push({ owner: 'grafana', path: 'monitoring.grafanaPort', port: t.monitoring.grafanaPort });
  return [...services, ...monitoring];
}

/** unique-ports: the ports more than one listener uses, with the owners and their stack-file paths in stack-file order. */
export function portClashes(t: Topology): { port: number; owners: string[]; paths: string[] }[] {
  const byPort = new Map<number, { owners: string[]; paths: string[] }>();
  for (const { owner, path, port } of portSettings(t)) {
    const entry = byPort.get(port) ?? { owners: [], paths: [] };
    entry.owners.push(owner);
    entry.paths.push(path);
    byPort.set(port, entry);
  }
  return [...byPort.entries()].filter(([, e]) => e.owners.length > 1).map(([port, e]) => ({ port, ...e }));
}

/** aws-vpc-subnets: an existing VPC needs both subnet lists, and subnet lists need the VPC. */
export function vpcSubnetsConsistent(aws: Topology['aws']): boolean {
  const { vpcId, publicSubnetIds, privateSubnetIds } = aws;
  return vpcId === undefined ? publicSubnetIds === undefined && privateSubnetIds === undefined : Boolean(publicSubnetIds?.length && privateSubnetIds?.length);
}

/** stop-timeout-covers-drain: why ECS would SIGKILL the gateway or nginx before its drain ends (aws: 120 s cap). */
export function stopCapFindings(t: Topology): TopologyFinding[] {
  const plans = stopPlans(t);
  return fargateStopCapOverruns(t).map((o) => ({
    path: o.path,
    message: `the ${o.service} needs ${o.neededS} s to stop (${plans[o.service].covers} + ${STOP_MARGIN_S} s) but ECS on Fargate sends SIGKILL after at most ${FARGATE_MAX_STOP_TIMEOUT_S} s: a deploy would cut its clients mid-drain`,
  }));
}

/** stop-timeout-covers-drain on declared resources: a stop grace (docker destroyGraceSeconds, ECS stopTimeout) that ends before the gateway's drain does. */
export function declaredStopGraceMessage(graceS: number | undefined, drainWindowMs: number): string | undefined {
  const needed = Math.ceil(drainWindowMs / 1000) + STOP_MARGIN_S;
  if (graceS !== undefined && graceS >= needed) return undefined;
  return graceS === undefined
    ? `the gateway declares no stop grace (destroyGraceSeconds/stopTimeout), so a replacement kills it before its ${drainWindowMs} ms drain`
    : `the gateway gets ${graceS} s before SIGKILL but its ${drainWindowMs} ms drain needs ${needed} s`;
}

/** nginx-shutdown-covers-drain: after a reload (a route rollback), old nginx workers cut the gateway's WebSockets before the gateway's 4200 closes reach them. */
export function nginxShutdownFindings(t: Topology): TopologyFinding[] {
  const drainS = gatewayDrainS(t);
  if (t.nginx.workerShutdownTimeoutS >= drainS) return [];
  return [
    {
      path: 'nginx.workerShutdownTimeoutS',
      message: `worker_shutdown_timeout ${t.nginx.workerShutdownTimeoutS} s is shorter than the gateway's ${drainS} s drain window: after a reload old nginx workers cut the WebSockets they still hold all at once instead of letting the gateway spread its 4200 closes`,
    },
  ];
}

/** dns-staleness-within-drain: nginx may keep sending reconnects to a draining gateway for longer than its drain window lasts. */
export function dnsStalenessFindings(t: Topology): TopologyFinding[] {
  const staleS = dnsStalenessS(t.target);
  const drainS = gatewayDrainS(t);
  if (staleS <= drainS) return [];
  return [
    {
      path: 'gateway.drainWindowMs',
      message: `nginx can route new connections to a stopping gateway for ${staleS} s (DNS caches on ${t.target}) but the drain window is ${drainS} s: reconnects after 4200 can land on the gateway that is closing`,
    },
  ];
}

/** What each rule that reads the topology finds in one; an empty list means the rule holds. */
export const TOPOLOGY_FINDINGS: Readonly<Record<RuleIdReading<'topology'>, (t: Topology) => TopologyFinding[]>> = {
  'single-gateway-or-broker': (t) =>
    gatewaysNeedBroker(t.gateway.replicas, t.gateway.broker)
      ? [{ path: 'gateway.replicas', message: gatewaysWithoutBrokerMessage(t.gateway.replicas, `gateway.broker is "${t.gateway.broker}"`) }]
      : [],
  'desync-risk': (t) => (desyncRisk(t.wsRoute, t.backend.workers) ? [{ path: 'wsRoute', message: desyncRiskMessage(t.backend.workers) }] : []),
  'heartbeat-vs-timeouts': (t) =>
    idleTimeoutsCutBy(t.gateway.heartbeatMs, idleTimeoutsOf(t)).map((cut) => ({ path: cut.changeFirst, message: heartbeatMessage(t.gateway.heartbeatMs, [cut]) })),
  'unique-ports': (t) => portClashes(t).map(({ port, owners, paths }) => ({ path: paths[1]!, message: `port ${port} is used by ${owners.join(' and ')}` })),
  'legacy-widget-auth-off': (t) =>
    t.gateway.legacyWidgetAuth
      ? [{ path: 'gateway.legacyWidgetAuth', message: 'LEGACY_WIDGET_AUTH is on: anyone who knows an allowed domain reads and writes every dialog of that assistant without a credential' }]
      : [],
  'aws-https': (t) =>
    t.target === 'aws' && t.aws.certificateArn === undefined
      ? [{ path: 'aws.certificateArn', message: 'without aws.certificateArn the load balancer serves plain HTTP to the internet, and tokens travel in cleartext' }]
      : [],
  'aws-vpc-subnets': (t) =>
    vpcSubnetsConsistent(t.aws)
      ? []
      : [{ path: 'aws.vpcId', message: 'an existing VPC needs both aws.publicSubnetIds and aws.privateSubnetIds, and subnet ids need aws.vpcId' }],
  'backend-kind': backendKindFindings,
  'stop-timeout-covers-drain': stopCapFindings,
  'nginx-shutdown-covers-drain': nginxShutdownFindings,
  'dns-staleness-within-drain': dnsStalenessFindings,
};
