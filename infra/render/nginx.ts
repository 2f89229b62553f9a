import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Eta } from 'eta';
import { ReplyxError } from '../errors.js';
import { topologyChecksum, type Target, type Topology, type WsRoute } from '../topology/index.js';
import { NGINX_RESOLVER_VALID_S, nginxClientKeepaliveS } from './deploy-timing.js';
import { dnsResolverFor, upstreamHostsFor } from './service-hosts.js';
import { gatewayReplicaPorts } from '../topology/service-names.js';
import { WS_ROUTE_BACKEND, WS_ROUTE_HEADER } from '../../examples/backend/src/legacy-route.js';

// The nginx config is a pure function of the topology: `planNginx` computes every value the
// config needs (hosts, ports, timeouts, paths) and the templates in nginx-templates/ only lay
// them out. Tests check the plan and the text separately, and run real `nginx -t` on the text.

/** Directory holding the nginx templates (real nginx syntax with Eta placeholders). */
export const NGINX_TEMPLATES_DIR = fileURLToPath(new URL('../../nginx-templates/', import.meta.url));

/** Default idle keepalive connections each nginx worker keeps open to the backend. */
export const DEFAULT_BACKEND_KEEPALIVE = 32;
/**
 * How long nginx keeps an idle backend connection. It must be shorter than the backend's own
 * idle timeout (Node's and uvicorn's default is 5 s): otherwise nginx can send a request on a
 * connection the backend is closing, and a POST cut that way is answered 502 and not retried.
 * A draining backend also relies on it: its idle connections are gone within this time.
 */
export const BACKEND_KEEPALIVE_TIMEOUT_S = 4;


/** First nginx release whose open-source build re-resolves upstream `server` names (`resolve`). */
export const NGINX_MIN_VERSION_FOR_RESOLVE = [1, 27, 3] as const;

// An ALB (the only client of nginx on AWS) connects from private VPC addresses; X-Forwarded-For
// is trusted only from there, so clients cannot spoof their address past it.
const PRIVATE_NETWORKS = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'] as const;

/** Options that change how a topology is rendered, not what it routes. */
export interface NginxRenderOptions {
  /** Host overrides for the two upstreams (ports stay the topology's); tests render docker/aws configs with 127.0.0.1 so `nginx -t` can resolve them. */
  readonly upstreamHosts?: { readonly backend?: string; readonly gateway?: string };
  /**
   * Absolute directory for the pid file, logs and temp dirs, on any target (tests point
   * docker/aws renders here so `nginx -t` does not touch system paths). Unset: paths relative
   * to nginx's `-p` prefix for `local`, the image's standard paths (stdout/stderr logs) otherwise.
   */
  readonly prefixDir?: string;
  /** Idle keepalive connections per nginx worker to the backend upstream (default 32). */
  readonly backendKeepalive?: number;
  /** Proxy addresses (CIDRs) whose X-Forwarded-For gives the client address; default: private networks on aws (the ALB), none elsewhere. */
  readonly trustedProxyCidrs?: readonly string[];
  /**
   * Local target: the ports the gateway upstream lists instead of the replicas' (`gateway.port + i - 1`),
   * each optionally marked down; a rolling or blue/green restart renders its steps with these.
   */
  readonly gatewayServers?: readonly { readonly port: number; readonly down?: boolean }[];
  /**
   * The hard open-file limit nginx's master runs with (local target: a running master's from
   * /proc/<pid>/limits, else the limit of the process that starts it). worker_rlimit_nofile stays
   * at or below it: above it the master's setrlimit fails, it logs an alert on every start and
   * reload, and the workers keep the inherited limit anyway. Unset (docker, aws: the container's
   * nofile is set to fit, kernel-limits.ts): no cap.
   */
  readonly openFileLimit?: number;
}

/** One `server` line of an upstream block. */
export interface NginxUpstreamServerPlan {
  readonly host: string;
  readonly port: number;
  /** `host:port` as nginx expects it (IPv6 in brackets). */
  readonly address: string;
  /** Whether nginx re-resolves `host` while running (names on docker/aws; never IP literals). */
  readonly resolve: boolean;
  /** Marked `down`: nginx sends it no new connections (a local replica leaving for a rolling restart). */
  readonly down?: boolean;
}

/** One upstream block. */
export interface NginxUpstreamPlan {
  /** nginx upstream name, used in `proxy_pass http://<name>`. */
  readonly name: string;
  readonly servers: readonly NginxUpstreamServerPlan[];
  /** Idle keepalive connections per worker; 0 = none (the gateway's connections are long-lived upgrades). */
  readonly keepalive: number;
  /** Seconds an idle keepalive connection is kept (with `keepalive` > 0). */
  readonly keepaliveTimeoutS: number;
  /** `least_conn` suits long-lived WebSockets: new connections go to the least busy replica. */
  readonly leastConn: boolean;
}

/** One proxied location. */
export interface NginxProxyLocationPlan {
  readonly path: string;
  /** Name of the upstream block this location proxies to. */
  readonly upstream: string;
  readonly connectTimeoutS: number;
  readonly readTimeoutS: number;
  readonly sendTimeoutS: number;
}

/** A location that answers 404 itself so the path never reaches an upstream. */
export interface NginxBlockedLocationPlan {
  /** `^~` (prefix match that stops the search, so it wins over `/api/`) or `=` (exact). */
  readonly modifier: '^~' | '=';
  readonly path: string;
}

/**
 * Level of the error log inside the server block, where every line nginx writes about a request
 * quotes its request line (`request: "GET /api/...?site_token=..."`), query string and all. Every
 * level up to `crit` has such lines (upstream failures, 413s, rate-limit refusals, temp-file
 * errors), so only `emerg` keeps tokens out; request failures show in the access log instead
 * (status, upstream_status, limit_req). nginx's own events stay at `warn` in the main context.
 */
export const REQUEST_ERROR_LOG_LEVEL = 'emerg';

/** Shared-memory size of each rate-limit zone: about 16,000 client addresses per MiB (binary IPv4 keys). */
export const RATE_LIMIT_ZONE_MB = 10;

/** One `limit_req` + `limit_conn` pair applied to a location, keyed by the client address. */
export interface NginxRateLimitPlan {
  /** Zone name of the request-rate limit (`limit_req_zone ... zone=<name>`). */
  readonly reqZone: string;
  readonly ratePerSecond: number;
  readonly burst: number;
  /** Zone name of the concurrent-connection limit. */
  readonly connZone: string;
  readonly connections: number;
}

/** Everything the nginx templates need: computed here, laid out by the templates. */
export interface NginxPlan {
  /** `topologyChecksum(topology)`, written into the header. */
  readonly checksum: string;
  readonly target: Target;
  readonly wsRoute: WsRoute;
  readonly pidFile: string;
  readonly errorLog: string;
  readonly accessLog: string;
  /** Temp dirs for every proxy-capable module; unset keeps the image's compiled-in paths. */
  readonly tempPaths?: {
    readonly clientBody: string;
    readonly proxy: string;
    readonly fastcgi: string;
    readonly uwsgi: string;
    readonly scgi: string;
  };
  readonly workerShutdownTimeoutS: number;
  /** keepalive_timeout for client connections: above the load balancer's idle timeout on aws. */
  readonly clientKeepaliveTimeoutS: number;
  readonly workerConnections: number;
  /** Each proxied connection holds two descriptors (client and upstream); capped at `openFileLimit`. */
  readonly workerRlimitNofile: number;
  /** DNS server and cache time for re-resolving upstream names (docker, aws); unset for local, whose upstreams are loopback IPs. */
  readonly resolver?: { readonly address: string; readonly validS: number; readonly timeoutS: number };
  readonly trustedProxyCidrs: readonly string[];
  /** nginx expression sent as X-Forwarded-Proto. */
  readonly forwardedProto: string;
  /** Argument of `listen`. */
  readonly listen: string;
  /** `listen ... backlog=`: the accept queue a reconnect storm fills (nginx's Linux default is 511). */
  readonly listenBacklog: number;
  readonly upstreams: { readonly backend: NginxUpstreamPlan; readonly gateway: NginxUpstreamPlan };
  readonly api: NginxProxyLocationPlan & { readonly clientMaxBodySize: string };
  /**
   * Per-request memory of the whole server: client_header_buffer_size (nginx.clientHeaderBufferKb)
   * and request_pool_size (nginx.requestPoolBytes); an open WebSocket holds both.
   */
  readonly request: { readonly headerBufferSize: string; readonly poolSize: number };
  /**
   * `bufferSize`: proxy_buffer_size of /ws/ (nginx.wsProxyBufferBytes), per direction per WebSocket.
   * `routeMark`: the header the backend's legacy /ws/ requires (examples/backend/src/legacy-route.ts);
   * its value is empty (nginx then sends none, dropping a client's own) unless wsRoute is backend.
   */
  readonly ws: NginxProxyLocationPlan & { readonly bufferSize: number; readonly routeMark: { readonly header: string; readonly value: string } };
  readonly blocked: readonly NginxBlockedLocationPlan[];
  readonly healthPath: string;
  /** Per-client limits of /api/ and of /ws/ handshakes; refusals answer `limitStatus`. */
  readonly rateLimits: { readonly api: NginxRateLimitPlan; readonly ws: NginxRateLimitPlan; readonly zoneMb: number; readonly limitStatus: number };
  /** Error-log level inside the server block ({@link REQUEST_ERROR_LOG_LEVEL}). */
  readonly requestErrorLogLevel: string;
  /** The demo pages (examples/web, built by the local stack into `root`), when served. */
  readonly demo?: { readonly path: string; readonly root: string };
}

/** The per-client limits nginx applies; `nginx.*` keys of the same names override them. */
export interface RateLimitSettings {
  readonly apiRequestsPerSecond: number;
  readonly apiBurst: number;
  readonly apiConnectionsPerClient: number;
  readonly wsHandshakesPerSecond: number;
  readonly wsHandshakeBurst: number;
  readonly wsConnectionsPerClient: number;
}

/**
 * Accept queue of nginx's listener (the kernel caps it at net.core.somaxconn; nginx's default is
 * 511): the clients of a drained gateway come back by the thousand within seconds, and each SYN
 * a full queue drops costs its client a 1 s, 3 s, 7 s... retransmit (BENCHMARKS.md, (e)).
 */
export const NGINX_LISTEN_BACKLOG = 4096;

/** Descriptors an nginx worker's `workerConnections` proxied connections hold: a client and an upstream socket each (worker_rlimit_nofile, uncapped). */
export function nginxConnectionDescriptors(workerConnections: number): number {
  return workerConnections * 2;
}

/**
 * Per-client limit defaults. Deployed targets face the internet: a page's API calls and a
 * reconnecting tab fit well inside them. On the local target one loopback address carries every
 * client of the end-to-end suites, the reliability suite, the load-test runbook and the benchmarks,
 * so its defaults sit far above them (set the keys to try real limits locally, as the security
 * suite does).
 */
export const RATE_LIMIT_DEFAULTS: { readonly deployed: RateLimitSettings; readonly local: RateLimitSettings } = {
  deployed: { apiRequestsPerSecond: 50, apiBurst: 100, apiConnectionsPerClient: 100, wsHandshakesPerSecond: 20, wsHandshakeBurst: 100, wsConnectionsPerClient: 500 },
  local: { apiRequestsPerSecond: 20_000, apiBurst: 40_000, apiConnectionsPerClient: 20_000, wsHandshakesPerSecond: 20_000, wsHandshakeBurst: 40_000, wsConnectionsPerClient: 65_535 },
};

/** The limits `topology` gets on `target`: its own `nginx.*` values over the target's defaults. */
export function rateLimitsFor(topology: Topology, target: Target = topology.target): RateLimitSettings {
  const base = RATE_LIMIT_DEFAULTS[target === 'local' ? 'local' : 'deployed'];
  const n = topology.nginx;
  return {
    apiRequestsPerSecond: n.apiRequestsPerSecond ?? base.apiRequestsPerSecond,
    apiBurst: n.apiBurst ?? base.apiBurst,
    apiConnectionsPerClient: n.apiConnectionsPerClient ?? base.apiConnectionsPerClient,
    wsHandshakesPerSecond: n.wsHandshakesPerSecond ?? base.wsHandshakesPerSecond,
    wsHandshakeBurst: n.wsHandshakeBurst ?? base.wsHandshakeBurst,
    wsConnectionsPerClient: n.wsConnectionsPerClient ?? base.wsConnectionsPerClient,
  };
}

/** Where the demo pages are served, and the directory (under nginx's prefix) the local stack builds them into. */
export const DEMO_PAGES = { path: '/demo/', dir: 'demo' } as const;

/** Whether `topology` serves the demo pages on `target`: `nginx.demoPages`, by default only on local. */
export function demoPagesEnabled(topology: Topology, target: Target = topology.target): boolean {
  return topology.nginx.demoPages ?? target === 'local';
}

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

function optionError(message: string, fix: string): ReplyxError {
  return new ReplyxError('RPX_NGINX_RENDER_OPTION', message, fix);
}

function upstreamServer(host: string, port: number, which: string, mayResolve: boolean): NginxUpstreamServerPlan {
  const ipVersion = net.isIP(host);
  if (ipVersion === 0 && !HOSTNAME.test(host)) {
    throw optionError(`upstream host for ${which} is not a host name or IP address: ${JSON.stringify(host)}`, 'pass a DNS name like "replyx-backend" or an IP like 127.0.0.1');
  }
  return {
    host,
    port,
    address: ipVersion === 6 ? `[${host}]:${port}` : `${host}:${port}`,
    // An IP literal has nothing to re-resolve; names on docker/aws change address when a
    // container or task is replaced, so nginx must follow DNS instead of keeping the first answer.
    resolve: mayResolve && ipVersion === 0,
  };
}

// Values end up inside double-quoted nginx strings; `$` would make access_log paths variable.
function checkedPrefixDir(dir: string): string {
  if (!path.isAbsolute(dir) || /["\\$\r\n]/.test(dir)) {
    throw optionError(`prefixDir must be an absolute path without quotes, backslashes, "$" or newlines: ${JSON.stringify(dir)}`, 'use a plain absolute directory such as one from fs.mkdtemp');
  }
  return path.normalize(dir);
}

function checkedCidr(cidr: string): string {
  const [address = '', bits, ...rest] = cidr.split('/');
  const version = net.isIP(address);
  const max = version === 6 ? 128 : 32;
  const ok = version !== 0 && rest.length === 0 && (bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max));
  if (!ok) throw optionError(`trustedProxyCidrs entry is not an address or CIDR: ${JSON.stringify(cidr)}`, 'use entries like "10.0.0.0/8" or "192.0.2.10"');
  return cidr;
}

/**
 * Whether an nginx image reference is known to support `server ... resolve` in upstream blocks:
 * true/false for `nginx:<version>` tags, undefined when the tag says nothing (latest, a digest, another image).
 */
export function nginxImageSupportsResolve(image: string): boolean | undefined {
  const withoutDigest = image.split('@')[0] ?? image;
  const lastSlash = withoutDigest.lastIndexOf('/');
  const colon = withoutDigest.lastIndexOf(':');
  if (colon <= lastSlash) return undefined;
  const repository = withoutDigest.slice(lastSlash + 1, colon);
  if (repository !== 'nginx') return undefined;
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?(?:$|-)/.exec(withoutDigest.slice(colon + 1));
  if (!m) return undefined;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  // A tag without a patch level (1.27-alpine) floats to that branch's newest patch release.
  const patch = m[3] === undefined ? Number.POSITIVE_INFINITY : Number(m[3]);
  const [wantMajor, wantMinor, wantPatch] = NGINX_MIN_VERSION_FOR_RESOLVE;
  if (major !== wantMajor) return major > wantMajor;
  if (minor !== wantMinor) return minor > wantMinor;
  return patch >= wantPatch;
}

interface RuntimePaths {
  pidFile: string;
  errorLog: string;
  accessLog: string;
  tempPaths?: NginxPlan['tempPaths'];
}

/** Where nginx writes its access and error logs under a prefix directory (local target, tests). */
export function nginxLogFiles(prefixDir: string): { readonly access: string; readonly error: string } {
  return { access: path.join(prefixDir, 'logs/access.log'), error: path.join(prefixDir, 'logs/error.log') };
}

function runtimePaths(target: Target, prefixDir: string | undefined): RuntimePaths {
  if (prefixDir === undefined && target !== 'local') {
    // The official image's locations; logs go to the container's stdout/stderr so
    // `docker logs <name>-nginx` and CloudWatch (awslogs driver) see them.
    return { pidFile: '/var/run/nginx.pid', errorLog: '/dev/stderr', accessLog: '/dev/stdout' };
  }
  // Relative paths resolve against nginx's `-p` prefix, so a local nginx needs no write access
  // outside its own directory (the compiled-in /var/lib/nginx temp dirs need root). Temp dirs sit
  // directly in the prefix because nginx creates only the last path component.
  const at = (p: string) => (prefixDir === undefined ? p : path.join(prefixDir, p));
  const logs = nginxLogFiles('');
  return {
    pidFile: at('logs/nginx.pid'),
    errorLog: at(logs.error),
    accessLog: at(logs.access),
    tempPaths: {
      clientBody: at('client_body_temp'),
      proxy: at('proxy_temp'),
      fastcgi: at('fastcgi_temp'),
      uwsgi: at('uwsgi_temp'),
      scgi: at('scgi_temp'),
    },
  };
}

/** Computes the template model for `topology` on `target`: upstream hosts and ports, timeouts, paths, blocked locations. */
export function planNginx(topology: Topology, target: Target = topology.target, options: NginxRenderOptions = {}): NginxPlan {
  const defaults = upstreamHostsFor(topology, target);
  const resolverAddress = dnsResolverFor(target);
  const mayResolve = resolverAddress !== undefined;
  const backendServer = upstreamServer(options.upstreamHosts?.backend ?? defaults.backend, topology.backend.port, 'backend', mayResolve);
  const gatewayHost = options.upstreamHosts?.gateway ?? defaults.gateway;
  // Locally every replica is a process on its own port; docker and aws reach all replicas behind one name.
  const gatewayServers = target === 'local'
    ? (options.gatewayServers ?? gatewayReplicaPorts(topology.gateway).map((port): { port: number; down?: boolean } => ({ port }))).map((s) => ({ ...upstreamServer(gatewayHost, s.port, 'gateway', mayResolve), ...(s.down ? { down: true } : {}) }))
    : [upstreamServer(gatewayHost, topology.gateway.port, 'gateway', mayResolve)];
  if (gatewayServers.length === 0 || gatewayServers.every((s) => s.down)) throw optionError('gatewayServers leaves the gateway upstream without a server that is up', 'keep at least one gateway server not marked down');
  const needsResolve = backendServer.resolve || gatewayServers.some((s) => s.resolve);

  if (needsResolve && nginxImageSupportsResolve(topology.nginx.image) === false) {
    throw new ReplyxError(
      'RPX_NGINX_IMAGE_TOO_OLD',
      `nginx.image ${topology.nginx.image} cannot re-resolve upstream names (needs nginx ${NGINX_MIN_VERSION_FOR_RESOLVE.join('.')} or newer); it would keep sending traffic to replaced ${target === 'aws' ? 'tasks' : 'containers'}`,
      'set replyx:nginx.image to nginx:1.27-alpine or newer (the default)',
    );
  }

  const keepalive = options.backendKeepalive ?? DEFAULT_BACKEND_KEEPALIVE;
  if (!Number.isInteger(keepalive) || keepalive < 1 || keepalive > 10_000) {
    throw optionError(`backendKeepalive must be an integer from 1 to 10000, got ${keepalive}`, 'pass a small number such as 32');
  }

  const openFileLimit = options.openFileLimit ?? Number.POSITIVE_INFINITY;
  if (!(openFileLimit >= 1) || (Number.isFinite(openFileLimit) && !Number.isInteger(openFileLimit))) {
    throw optionError(`openFileLimit must be a whole number of at least 1, got ${options.openFileLimit}`, "pass the hard limit nginx's master gets (ulimit -Hn), or leave it unset");
  }

  const trustedProxyCidrs = (options.trustedProxyCidrs ?? (target === 'aws' ? PRIVATE_NETWORKS : [])).map(checkedCidr);
  const prefixDir = options.prefixDir === undefined ? undefined : checkedPrefixDir(options.prefixDir);
  const n = topology.nginx;
  const limits = rateLimitsFor(topology, target);
  const demo = demoPagesEnabled(topology, target);
  if (demo && target !== 'local') {
    throw optionError(`nginx.demoPages is on for the ${target} target, whose nginx does not carry the demo pages`, 'remove replyx:nginx.demoPages (the local stack serves them: npm start, then /demo/)');
  }

  const backend: NginxUpstreamPlan = { name: 'replyx_backend', servers: [backendServer], keepalive, keepaliveTimeoutS: BACKEND_KEEPALIVE_TIMEOUT_S, leastConn: false };
  const gateway: NginxUpstreamPlan = { name: 'replyx_ws_gateway', servers: gatewayServers, keepalive: 0, keepaliveTimeoutS: 0, leastConn: true };

  return {
    checksum: topologyChecksum(topology),
    target,
    wsRoute: topology.wsRoute,
    ...runtimePaths(target, prefixDir),
    workerShutdownTimeoutS: n.workerShutdownTimeoutS,
    workerConnections: n.workerConnections,
    workerRlimitNofile: Math.min(nginxConnectionDescriptors(n.workerConnections), openFileLimit),
    // Kept even when overrides made every host an IP literal, so a test render is the same config.
    // valid= is as short as the Cloud Map TTL (deploy-timing.ts): a draining gateway leaves the upstream within seconds.
    ...(resolverAddress !== undefined ? { resolver: { address: resolverAddress, validS: NGINX_RESOLVER_VALID_S, timeoutS: 5 } } : {}),
    clientKeepaliveTimeoutS: nginxClientKeepaliveS(topology, target),
    trustedProxyCidrs,
    // Behind a TLS-terminating load balancer $scheme is always http; the balancer's header is the truth.
    forwardedProto: trustedProxyCidrs.length > 0 ? '$replyx_forwarded_proto' : '$scheme',
    // Containers and tasks listen on the public port too (Docker publishes nginx.port:nginx.port,
    // the ALB targets nginx.port), so one number means the same thing everywhere.
    listen: target === 'local' ? `127.0.0.1:${n.port}` : String(n.port),
    listenBacklog: NGINX_LISTEN_BACKLOG,
    upstreams: { backend, gateway },
    request: { headerBufferSize: `${n.clientHeaderBufferKb}k`, poolSize: n.requestPoolBytes },
    api: {
      path: '/api/',
      upstream: backend.name,
      connectTimeoutS: n.proxyConnectTimeoutS,
      readTimeoutS: n.apiReadTimeoutS,
      sendTimeoutS: n.apiReadTimeoutS,
      clientMaxBodySize: n.clientMaxBodySize,
    },
    ws: {
      path: '/ws/',
      upstream: topology.wsRoute === 'gateway' ? gateway.name : backend.name,
      connectTimeoutS: n.proxyConnectTimeoutS,
      // Validation guarantees this exceeds the gateway heartbeat, so an idle but healthy
      // WebSocket always sees a ping before nginx would time it out.
      readTimeoutS: n.proxyReadTimeoutS,
      sendTimeoutS: n.proxyReadTimeoutS,
      bufferSize: n.wsProxyBufferBytes,
      // Set from the plan, never by hand: a hand edit that points /ws/ at the backend keeps the
      // empty value, so the backend refuses its handshakes (4102) instead of losing events.
      routeMark: { header: WS_ROUTE_HEADER, value: topology.wsRoute === 'backend' ? WS_ROUTE_BACKEND : '' },
    },
    blocked: [
      { modifier: '^~', path: '/api/debug/' },
      { modifier: '=', path: '/api/debug' },
      { modifier: '^~', path: '/internal/' },
      { modifier: '=', path: '/internal' },
      // The backend and gateway answer /metrics on their own ports, for Prometheus only.
      { modifier: '=', path: '/metrics' },
      { modifier: '^~', path: '/metrics/' },
    ],
    healthPath: '/health',
    rateLimits: {
      api: { reqZone: 'replyx_api_req', ratePerSecond: limits.apiRequestsPerSecond, burst: limits.apiBurst, connZone: 'replyx_api_conn', connections: limits.apiConnectionsPerClient },
      ws: { reqZone: 'replyx_ws_req', ratePerSecond: limits.wsHandshakesPerSecond, burst: limits.wsHandshakeBurst, connZone: 'replyx_ws_conn', connections: limits.wsConnectionsPerClient },
      zoneMb: RATE_LIMIT_ZONE_MB,
      // 429 tells clients (and the access log) "slow down", unlike nginx's default 503.
      limitStatus: 429,
    },
    requestErrorLogLevel: REQUEST_ERROR_LOG_LEVEL,
    ...(demo ? { demo: { path: DEMO_PAGES.path, root: prefixDir === undefined ? DEMO_PAGES.dir : path.join(prefixDir, DEMO_PAGES.dir) } } : {}),
  };
}

// One engine for the process: templates are compiled once and cached. autoTrim is off so a
// placeholder at the end of a line keeps its newline; control lines end in `-%>` instead.
const eta = new Eta({ views: NGINX_TEMPLATES_DIR, autoEscape: false, autoTrim: false, cache: true });

/** Renders the complete nginx.conf (main context included) for `topology` on `target`; same input, same bytes. */
export function renderNginxConfig(topology: Topology, target: Target = topology.target, options: NginxRenderOptions = {}): string {
  const text = eta.render('nginx.conf.eta', planNginx(topology, target, options));
  return text.endsWith('\n') ? text : `${text}\n`;
}

/** The machine-readable header lines of a rendered config. */
export interface NginxConfigHeader {
  readonly checksum?: string;
  readonly target?: string;
  readonly wsRoute?: string;
}

const headerLine = (text: string, key: string, value: RegExp): string | undefined =>
  new RegExp(`^# replyx-${key}: (${value.source})[ \\t\\r]*$`, 'm').exec(text)?.[1];

/** Reads the `# replyx-*` header lines (checksum, target, ws route) from a config's text. */
export function readNginxConfigHeader(text: string): NginxConfigHeader {
  const checksum = headerLine(text, 'topology-checksum', /[0-9a-f]{16}/);
  const target = headerLine(text, 'target', /[a-z]+/);
  const wsRoute = headerLine(text, 'ws-route', /[a-z]+/);
  return { ...(checksum ? { checksum } : {}), ...(target ? { target } : {}), ...(wsRoute ? { wsRoute } : {}) };
}

/** The topology checksum a rendered config was generated from, or undefined if it has none (hand-written or foreign). */
export function readChecksumFromConfig(text: string): string | undefined {
  return readNginxConfigHeader(text).checksum;
}
