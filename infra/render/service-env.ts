import type { Topology } from '../topology/index.js';

// Each service's settings (environment and command line) rendered once from the topology. What
// only a target knows — where Postgres and Redis are, which secrets it holds and how it hands
// them over, which address to bind, what a process is called — stays a typed reference that the
// target resolves (local: literal values; docker: SecretRefs over container names; aws:
// Secrets Manager ARNs), so no target restates a variable and no render guesses a value.

/** The services whose settings are rendered here (the topology's keys). */

/**
 * Seconds the backend gets between SIGTERM and SIGKILL on every target: the reference backend's
 * workers finish every request they hold, up to its 30 s request timeout (DRAIN_GRACE_MS in
 * examples/backend/src/worker.ts), and its primary waits for them. A shorter grace cuts requests.
 */
export const BACKEND_STOP_GRACE_S = 40;

export type RenderedService = 'backend' | 'gateway' | 'nginx' | 'redis' | 'postgres';

/** A value only the target knows. */
export type SettingRef =
  /** Address the service binds: loopback locally, every interface in a container. */
  | 'bindHost'
  /** Postgres connection URL of the owner (carries the password where the target has one): the backend's. */
  | 'databaseUrl'
  /** Postgres connection URL of the gateway's role (SELECT on the access views only). */
  | 'gatewayDatabaseUrl'
  /** Password the backend gives the gateway's role at start. */
  | 'gatewayDatabasePassword'
  /** Redis URL of the gateway's user (read histories, subscribe, load and call the function library). */
  | 'redisGatewayUrl'
  /** Redis URL of a publisher's user (call the publish function only). */
  | 'redisPublisherUrl'
  /** HS256 key shared by backend (signs) and gateway (verifies). */
  | 'jwtSecret'
  /** Key of site tokens (backend issues, gateway verifies); distinct from jwtSecret. */
  | 'siteTokenSecret'
  /** Key of widget session tokens (backend issues, gateway verifies); distinct from the other two. */
  | 'widgetTokenSecret'
  /** Key the backend sends to the gateway's /internal/publish. */
  | 'publishKey'
  /** Token for the gateway's debug endpoints; targets without one omit the variable. */
  | 'debugToken'
  /** Name of one gateway process; targets that cannot name it omit it (the gateway then uses hostname-pid). */
  | 'instanceId'
  /** CA bundle file the images carry for verifying the database server (aws: RDS); targets without one omit it. */
  | 'databaseCaFile'
  /** Password of the Postgres user (the Postgres container's own setting). */
  | 'postgresPassword';

/** Every {@link SettingRef}, for targets that check they resolve all of them. */
export const SETTING_REFS = ['bindHost', 'databaseUrl', 'gatewayDatabaseUrl', 'gatewayDatabasePassword', 'redisGatewayUrl', 'redisPublisherUrl', 'jwtSecret', 'siteTokenSecret', 'widgetTokenSecret', 'publishKey', 'debugToken', 'instanceId', 'databaseCaFile', 'postgresPassword'] as const satisfies readonly SettingRef[];

/** Refs whose resolved value is a credential (or embeds one): never shown, compared or logged. */
export const SECRET_SETTING_REFS: ReadonlySet<SettingRef> = new Set(['databaseUrl', 'gatewayDatabaseUrl', 'gatewayDatabasePassword', 'redisGatewayUrl', 'redisPublisherUrl', 'jwtSecret', 'siteTokenSecret', 'widgetTokenSecret', 'publishKey', 'debugToken', 'postgresPassword']);

/** A setting: a literal derived from the topology, or a reference the target resolves. */
export type SettingValue = string | { readonly ref: SettingRef };

/** The rendered settings of one service. */
export interface ServiceSettings {
  /** Environment variables by name, sorted. */
  readonly env: Readonly<Record<string, SettingValue>>;
  /**
   * Server arguments the stack sets (redis), without the program name; targets add what is
   * theirs alone (persistence, bind address). Undefined: the program's own defaults.
   */
  readonly args?: readonly string[];
  /** The entry point when a target runs the service from this repository's source (local). */
  readonly source?: string;
  /** What runs `source`: Node with tsx (default), or Debian's python3 (the FastAPI backend). */
  readonly runtime?: 'node' | 'python';
}

/** Options of {@link renderServiceEnv}; every one has a documented default. */
export interface RenderServiceOptions {
  /** LOG_LEVEL of backend and gateway. Default "info". */
  readonly logLevel?: string;
}

const ref = (name: SettingRef) => ({ ref: name }) as const;

function sorted(env: Record<string, SettingValue>): Readonly<Record<string, SettingValue>> {
  return Object.fromEntries(Object.entries(env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Renders one service's environment and arguments from the topology (pure). */
export function renderServiceEnv(topology: Topology, service: RenderedService, options: RenderServiceOptions = {}): ServiceSettings {
  const logLevel = options.logLevel ?? 'info';
  const { limits } = topology;
  // Both read it: the gateway for the socket, the backend for the widget's API calls.
  const legacyWidgetAuth = topology.gateway.legacyWidgetAuth ? '1' : '0';
  const history = { HISTORY_LENGTH: String(limits.historyLength), HISTORY_TTL_S: String(limits.historyTtlS) };
  switch (service) {
    case 'backend':
      return {
        env: sorted({
          HOST: ref('bindHost'),
          PORT: String(topology.backend.port),
          // Both names: the reference backend reads BACKEND_WORKERS, the seed's Python backend UVICORN_WORKERS.
          BACKEND_WORKERS: String(topology.backend.workers),
          UVICORN_WORKERS: String(topology.backend.workers),
          DATABASE_URL: ref('databaseUrl'),
          NODE_EXTRA_CA_CERTS: ref('databaseCaFile'),
          GATEWAY_DATABASE_PASSWORD: ref('gatewayDatabasePassword'),
          REDIS_URL: ref('redisPublisherUrl'),
          JWT_SECRET: ref('jwtSecret'),
          SITE_TOKEN_SECRET: ref('siteTokenSecret'),
          WIDGET_TOKEN_SECRET: ref('widgetTokenSecret'),
          LEGACY_WIDGET_AUTH: legacyWidgetAuth,
          SEED_DEMO: seedsDemo(topology) ? '1' : '0',
          LOG_LEVEL: logLevel,
          ...history,
        }),
        ...(topology.backend.kind === 'fastapi' ? { source: 'examples/fastapi/run.py', runtime: 'python' as const } : { source: 'examples/backend/src/main.ts' }),
      };
    case 'gateway':
      return {
        env: sorted({
          HOST: ref('bindHost'),
          PORT: String(topology.gateway.port),
          REDIS_URL: ref('redisGatewayUrl'),
          DATABASE_URL: ref('gatewayDatabaseUrl'),
          NODE_EXTRA_CA_CERTS: ref('databaseCaFile'),
          JWT_SECRET: ref('jwtSecret'),
          SITE_TOKEN_SECRET: ref('siteTokenSecret'),
          WIDGET_TOKEN_SECRET: ref('widgetTokenSecret'),
          PUBLISH_KEY: ref('publishKey'),
          DEBUG_TOKEN: ref('debugToken'),
          LEGACY_WIDGET_AUTH: legacyWidgetAuth,
          HEARTBEAT_MS: String(topology.gateway.heartbeatMs),
          BROKER: topology.gateway.broker,
          DRAIN_WINDOW_MS: String(topology.gateway.drainWindowMs),
          MAX_PAYLOAD_BYTES: String(limits.maxPayloadBytes),
          SEND_BUFFER_BYTES: String(limits.sendBufferBytes),
          MAX_CONNECTIONS: String(limits.maxConnections),
          MAX_CONNECTIONS_PER_IP: String(limits.maxConnectionsPerIp),
          HANDSHAKES_PER_IP_PER_SECOND: String(limits.handshakesPerIpPerSecond),
          ...history,
          LOG_LEVEL: logLevel,
          INSTANCE_ID: ref('instanceId'),
          // The seed's contract for the WebSocket service: one worker, websocket mode; replicas scale it.
          SERVICE_MODE: 'websocket',
          UVICORN_WORKERS: '1',
        }),
        source: 'gateway/src/main.ts',
      };
    case 'redis':
      return { env: {}, args: redisServerArgs(topology.redis) };
    case 'postgres':
      // The official image's settings; PGPORT sets the port for the server, the image's
      // init-time server and psql alike, keeping the image's own command.
      return {
        env: sorted({
          PGPORT: String(topology.postgres.port),
          POSTGRES_USER: topology.postgres.user,
          POSTGRES_DB: topology.postgres.database,
          POSTGRES_PASSWORD: ref('postgresPassword'),
        }),
      };
    case 'nginx':
      // nginx takes everything from its rendered config (renderNginxConfig); targets only say where it is.
      return { env: {} };
  }
}

/** Whether the backend creates the demo data: `backend.seedDemo`, else only on the local target. */
export function seedsDemo(topology: Pick<Topology, 'target' | 'backend'>): boolean {
  return topology.backend.seedDemo ?? topology.target === 'local';
}

/** The redis-server arguments every target runs with: port, memory bound and eviction policy. */
export function redisServerArgs(redis: { readonly port: number; readonly maxmemoryMb: number }): string[] {
  // Dialog histories are capped streams with a TTL: evict the keys closest to expiry first.
  return ['--port', String(redis.port), '--maxmemory', `${redis.maxmemoryMb}mb`, '--maxmemory-policy', 'volatile-ttl'];
}

/** How a target turns a reference into its value; undefined leaves the variable out. */
export type SettingResolver<V> = (ref: SettingRef) => V | undefined;

/** Resolves every reference of `settings.env` with a target's resolver, keeping the order. */
export function resolveServiceEnv<V>(settings: ServiceSettings, resolve: SettingResolver<V>): Readonly<Record<string, string | V>> {
  const out: Record<string, string | V> = {};
  for (const [name, value] of Object.entries(settings.env)) {
    if (typeof value === 'string') {
      out[name] = value;
      continue;
    }
    const resolved = resolve(value.ref);
    if (resolved !== undefined) out[name] = resolved;
  }
  return out;
}

/** The variables of `settings` that hold a reference, with the reference (e.g. for secret grants). */
export function settingRefsOf(settings: ServiceSettings): readonly { readonly env: string; readonly ref: SettingRef }[] {
  return Object.entries(settings.env).flatMap(([env, value]) => (typeof value === 'string' ? [] : [{ env, ref: value.ref }]));
}
