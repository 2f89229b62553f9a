import { z } from 'zod';

// One schema for the whole stack. Every default here is the documented default (README's
// configuration reference is generated from these descriptions), so keep them in sync by
// editing only this file.

const port = z.int().min(1).max(65535);
const image = z.string().regex(/^[a-z0-9][a-z0-9._/:@-]*$/i, 'must be an image reference like "nginx:1.27-alpine"');

export const backendSchema = z
  .strictObject({
    image: image.optional().describe('Backend image to run; unset builds examples/backend (the reference backend).'),
    kind: z
      .enum(['node', 'fastapi'])
      .default('node')
      .describe('Which example backend the local target runs: "node" (examples/backend, the reference backend) or "fastapi" (examples/fastapi under uvicorn, publishing through python/replyx_publish; docker and aws need backend.image for it).'),
    workers: z.int().min(1).max(64).default(4).describe('HTTP worker processes (exported as BACKEND_WORKERS and UVICORN_WORKERS).'),
    port: port.default(8000).describe('Port the backend listens on.'),
    replicas: z.int().min(1).max(50).default(1).describe('Backend containers/tasks (AWS desired count).'),
    seedDemo: z
      .boolean()
      .optional()
      .describe('Create the demo users, assistants (allowing localhost and example.com) and dialogs at start (SEED_DEMO); unset: on for the local target only.'),
  })
  .describe('The multi-worker HTTP backend that serves /api/.');

export const gatewaySchema = z
  .strictObject({
    image: image.optional().describe('Gateway image to run; unset builds gateway/.'),
    replicas: z.int().min(1).max(50).default(1).describe('Gateway processes; more than 1 only with broker "redis". Local target: replica i listens on gateway.port + i - 1, all in the nginx upstream (least_conn).'),
    port: port.default(8001).describe('Port the gateway listens on (WebSocket, /health, /metrics, /internal/publish).'),
    heartbeatMs: z.int().min(1000).max(600_000).default(25_000).describe('Protocol ping interval; must be shorter than nginx.proxyReadTimeoutS.'),
    broker: z.enum(['redis', 'memory']).default('redis').describe('Fan-out between gateway processes: "redis" (shared) or "memory" (single process only).'),
    drainWindowMs: z.int().min(0).max(300_000).default(5_000).describe('On SIGTERM, closes with 4200 are spread over this window so clients do not reconnect at once.'),
    legacyWidgetAuth: z
      .boolean()
      .default(false)
      .describe('Accept the seed\'s credential-less widget (`?assistant_id=&parent_origin=`, no session token) on the gateway and the backend (LEGACY_WIDGET_AUTH), for a migration window only: `npm run check` fails while it is on (docs/security.md).'),
  })
  .describe('The WebSocket gateway that owns every /ws/ connection.');

export const nginxSchema = z
  .strictObject({
    image: image.default('nginx:1.27-alpine').describe('nginx image (docker and aws targets).'),
    port: port.default(8080).describe('Public port nginx listens on: the only entry to the stack.'),
    proxyReadTimeoutS: z.int().min(5).max(86_400).default(120).describe('proxy_read_timeout for /ws/ (seconds); must exceed the gateway heartbeat.'),
    proxyConnectTimeoutS: z.int().min(1).max(75).default(5).describe('proxy_connect_timeout for every upstream (seconds).'),
    apiReadTimeoutS: z.int().min(1).max(3600).default(60).describe('proxy_read_timeout for /api/ (seconds).'),
    wsProxyBufferBytes: z.int().min(256).max(65_536).multipleOf(16).default(384).describe('proxy_buffer_size for /ws/ (bytes, a multiple of 16). nginx holds one such buffer per direction for every open WebSocket; one that fits a request pool block (nginx.requestPoolBytes minus 80 bytes of pool header) is carved from the pool instead of allocated on its own. The upstream\'s handshake response headers must fit (the gateway\'s 101 is about 170 bytes; a longer one is answered 502 "upstream sent too big header"); frames larger than the buffer pass in several reads (nginx 1.22, bench/micro/nginx-ws-memory.ts: 512 holds an idle WebSocket in 1.3 KiB less than 1024, bench/micro/nginx-ws-buffer.ts measures the CPU per frame).'),
    clientHeaderBufferKb: z.int().min(1).max(64).default(2).describe('client_header_buffer_size for the whole server (KiB). An open WebSocket keeps its handshake\'s header buffer; a browser\'s handshake with its token (`replyx.token.<JWT>`) is about 1.0-1.5 KB (more behind a load balancer), and one that does not fit here moves into an 8 KiB large_client_header_buffers buffer held just as long (nginx 1.22, bench/micro/nginx-ws-memory.ts: 18.1 KiB per WebSocket with a 1 KiB buffer, 14.1 with 2 KiB). Longer headers (cookies, long URLs) still pass in the large buffers.'),
    requestPoolBytes: z.int().min(256).max(65_536).multipleOf(16).default(768).describe('request_pool_size for the whole server (bytes, a multiple of 16). An open WebSocket keeps its request\'s memory pool, which grows in blocks of this size and wastes part of each block\'s tail; allocations larger than a block are made outside it, so no request is limited by it (nginx 1.22: 768 holds an idle WebSocket in 0.7-0.9 KiB less than the 4 KiB default).'),
    workerShutdownTimeoutS: z.int().min(1).max(3600).default(30).describe('worker_shutdown_timeout: how long a reload lets old workers keep WebSockets (seconds).'),
    workerConnections: z.int().min(64).max(1_000_000).default(16_384).describe('worker_connections per nginx worker. worker_rlimit_nofile is twice this (a proxied connection holds a client and an upstream descriptor); on the local target it is capped at the hard open-file limit nginx runs with (`ulimit -Hn` of the shell that started it), which it cannot raise; on docker and aws the container\'s nofile is set to it plus 1,000 (aws: at least 65,536).'),
    clientMaxBodySize: z.string().regex(/^\d+[km]?$/i, 'must be an nginx size like "1m" or "512k"').default('1m').describe('client_max_body_size for /api/.'),
    apiRequestsPerSecond: z.int().min(1).max(100_000).optional().describe('limit_req rate for /api/ per client address (requests per second); beyond rate plus apiBurst nginx answers 429. Unset: the target default (RATE_LIMIT_DEFAULTS: deployed targets strict, local far above its loopback tests and benchmarks).'),
    apiBurst: z.int().min(1).max(100_000).optional().describe('limit_req burst for /api/: requests above the rate a client may send at once (served without delay). Unset: the target default (RATE_LIMIT_DEFAULTS: deployed targets strict, local far above its loopback tests and benchmarks).'),
    apiConnectionsPerClient: z.int().min(1).max(65_535).optional().describe('limit_conn for /api/: concurrent requests per client address; more get 429. Unset: the target default (RATE_LIMIT_DEFAULTS: deployed targets strict, local far above its loopback tests and benchmarks).'),
    wsHandshakesPerSecond: z.int().min(1).max(100_000).optional().describe('limit_req rate for /ws/ handshakes per client address (per second); beyond rate plus wsHandshakeBurst nginx answers 429. Unset: the target default (RATE_LIMIT_DEFAULTS: deployed targets strict, local far above its loopback tests and benchmarks).'),
    wsHandshakeBurst: z.int().min(1).max(100_000).optional().describe('limit_req burst for /ws/ handshakes (a page reconnecting its sockets at once). Unset: the target default (RATE_LIMIT_DEFAULTS: deployed targets strict, local far above its loopback tests and benchmarks).'),
    wsConnectionsPerClient: z.int().min(1).max(65_535).optional().describe('limit_conn for /ws/: open WebSockets per client address through this nginx; more get 429. Unset: the target default (RATE_LIMIT_DEFAULTS: deployed targets strict, local far above its loopback tests and benchmarks).'),
    demoPages: z
      .boolean()
      .optional()
      .describe('Serve the demo pages (examples/web: operator page, customer site with the widget) under /demo/. Unset: on for the local target, off on docker and aws, whose nginx does not carry them (true there is refused).'),
  })
  .describe('nginx, the only public entry: routes /api/ to the backend and /ws/ to the gateway.');

export const redisSchema = z
  .strictObject({
    image: image.default('redis:7.2-alpine').describe('Redis image (docker target).'),
    port: port.default(6380).describe('Redis port.'),
    maxmemoryMb: z.int().min(16).max(1_048_576).default(256).describe('Redis maxmemory in MiB.'),
  })
  .describe('Redis: the event bus and short history between backend and gateway.');

export const postgresSchema = z
  .strictObject({
    image: image.default('postgres:16-alpine').describe('Postgres image (docker target).'),
    port: port.default(5433).describe('Postgres port.'),
    database: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/).default('replyx').describe('Database name.'),
    user: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/).default('replyx').describe('Database user.'),
  })
  .describe('Postgres: users, assistants, dialogs and messages.');

export const limitsSchema = z
  .strictObject({
    maxPayloadBytes: z.int().min(1024).max(16 * 1024 * 1024).default(64 * 1024).describe('Largest client frame; bigger closes with 1009.'),
    sendBufferBytes: z.int().min(16 * 1024).max(256 * 1024 * 1024).default(1024 * 1024).describe('Per-connection unsent bytes before closing with 4101 (slow consumer).'),
    maxConnections: z.int().min(1).max(10_000_000).default(50_000).describe("Connections per gateway process; more close with 4100. Each holds a file descriptor: docker and aws set the container's nofile to this plus 1,000 (aws: at least 65,536); a gateway whose open-file limit is lower admits that limit minus 1,000."),
    maxConnectionsPerIp: z.int().min(1).max(1_000_000).default(500).describe('Connections per client IP; more close with 4100.'),
    handshakesPerIpPerSecond: z.int().min(1).max(100_000).default(50).describe('Handshakes per client IP per second; more close with 4100.'),
    historyLength: z.int().min(0).max(1_000_000).default(1000).describe('Events kept per dialog for resume (since=).'),
    historyTtlS: z.int().min(60).max(30 * 86_400).default(86_400).describe('Seconds a dialog history lives after its last event.'),
  })
  .describe('Gateway limits.');

export const monitoringSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe('Run Prometheus scraping the backend and gateway with monitoring/alerts.yml loaded (and Grafana on docker); `npm start -- --monitoring` turns it on for one local run.'),
    prometheusPort: port.default(9190).describe('Port Prometheus listens on (local: 127.0.0.1; docker: published on the host\'s 127.0.0.1).'),
    grafanaPort: port.default(3000).describe('Port Grafana is published on, on the Docker host\'s 127.0.0.1 (docker target).'),
    scrapeIntervalS: z.int().min(1).max(300).default(15).describe('How often Prometheus scrapes each service (seconds).'),
    evaluationIntervalS: z.int().min(1).max(300).default(15).describe('How often Prometheus evaluates the alert rules (seconds).'),
    retentionHours: z.int().min(1).max(8760).default(168).describe('How long Prometheus keeps samples (hours).'),
    prometheusImage: image.default('prom/prometheus:v3.5.0').describe('Prometheus image (docker target; the local target runs Debian\'s /usr/bin/prometheus).'),
    grafanaImage: image.default('grafana/grafana:12.1.0').describe('Grafana image (docker target).'),
    alarmTopicArn: z
      .string()
      .regex(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$/, 'must be an SNS topic ARN like "arn:aws:sns:eu-west-1:123456789012:replyx-alerts"')
      .optional()
      .describe('SNS topic the CloudWatch alarms notify (aws target); unset: the alarms change state without notifying anyone.'),
  })
  .describe('Monitoring: Prometheus with the alert rules, and Grafana with the dashboard (docker); on aws, CloudWatch alarms instead.');

export const awsSchema = z
  .strictObject({
    region: z.string().optional().describe('AWS region; unset uses the aws:region stack setting.'),
    vpcId: z.string().optional().describe('Existing VPC id; unset creates a VPC.'),
    publicSubnetIds: z.array(z.string()).optional().describe('With vpcId: subnets for the load balancer.'),
    privateSubnetIds: z.array(z.string()).optional().describe('With vpcId: subnets for tasks, Redis and Postgres.'),
    availabilityZones: z.int().min(2).max(6).default(2).describe('Availability zones for a created VPC.'),
    natGateways: z
      .enum(['perZone', 'single'])
      .default('perZone')
      .describe('NAT gateways of a created VPC: one per zone (egress survives a zone outage) or a single one (cheaper; private egress depends on its zone).'),
    certificateArn: z.string().optional().describe('ACM certificate ARN; when set, HTTPS on 443 and HTTP redirects to it.'),
    albIdleTimeoutS: z.int().min(1).max(4000).default(300).describe('Load balancer idle timeout (seconds); must exceed the gateway heartbeat.'),
    taskCpu: z.int().min(256).max(16_384).default(512).describe('Fargate CPU units per task.'),
    taskMemoryMb: z.int().min(512).max(122_880).default(1024).describe('Fargate memory per task (MiB).'),
    redisNodeType: z.string().default('cache.t4g.micro').describe('ElastiCache node type.'),
    postgresInstanceClass: z.string().default('db.t4g.micro').describe('RDS instance class.'),
    postgresStorageGb: z.int().min(20).max(65_536).default(20).describe('RDS allocated storage (GiB).'),
    backupRetentionDays: z.int().min(1).max(35).default(7).describe('RDS backup retention (days).'),
    logRetentionDays: z.int().min(1).max(3653).default(14).describe('CloudWatch log retention (days).'),
  })
  .describe('AWS target settings (ignored by other targets).');

/** Keys that were renamed, by their old path: what to write instead (validation's fix for the old key). */
export const RENAMED_TOPOLOGY_KEYS: Readonly<Record<string, string>> = {
  'nginx.wsProxyBufferKb': 'nginx.wsProxyBufferBytes, in bytes (KiB x 1024; the default 384 holds an idle WebSocket in less memory than 1 KiB did)',
};

export const topologySchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,30}$/, 'must be lowercase letters, digits and dashes, starting with a letter')
      .default('replyx')
      .describe('Prefix of every container and resource name (replyx-backend, replyx-ws-gateway, ...).'),
    target: z.enum(['docker', 'aws', 'local']).default('docker').describe('Where the stack runs: one Docker host, AWS ECS Fargate, or local processes.'),
    wsRoute: z.enum(['gateway', 'backend']).default('gateway').describe('Who serves /ws/: the gateway (normal) or the backend (rollback to the pre-migration design).'),
    backend: backendSchema.prefault({}),
    gateway: gatewaySchema.prefault({}),
    nginx: nginxSchema.prefault({}),
    redis: redisSchema.prefault({}),
    postgres: postgresSchema.prefault({}),
    limits: limitsSchema.prefault({}),
    monitoring: monitoringSchema.prefault({}),
    aws: awsSchema.prefault({}),
  })
  .describe('The replyx stack.');

/** The validated, frozen stack description every renderer and script consumes. */
export type Topology = DeepReadonly<z.output<typeof topologySchema>>;
/** What a user writes: every key optional, defaults filled in by validation. */
export type TopologyInput = z.input<typeof topologySchema>;
export type Target = Topology['target'];
export type WsRoute = Topology['wsRoute'];
export type ServiceName = 'nginx' | 'backend' | 'gateway' | 'redis' | 'postgres';

export type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** Top-level keys of the topology, i.e. the `replyx:<key>` entries a stack file may hold. */
export const topologyKeys = Object.keys(topologySchema.shape) as (keyof TopologyInput)[];
