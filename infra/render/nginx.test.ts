import { describe, expect, it } from 'vitest';
import { WS_ROUTE_BACKEND, WS_ROUTE_HEADER } from '../../examples/backend/src/legacy-route.js';
import { ReplyxError } from '../errors.js';
import { NGINX_RESOLVER_VALID_S } from './deploy-timing.js';
import { topologyChecksum, validateTopology, type Target, type Topology, type TopologyInput, type WsRoute } from '../topology/index.js';
import {
  DEFAULT_BACKEND_KEEPALIVE,
  DEMO_PAGES,
  demoPagesEnabled,
  nginxImageSupportsResolve,
  planNginx,
  RATE_LIMIT_DEFAULTS,
  RATE_LIMIT_ZONE_MB,
  rateLimitsFor,
  readChecksumFromConfig,
  readNginxConfigHeader,
  renderNginxConfig,
  REQUEST_ERROR_LOG_LEVEL,
  type NginxRenderOptions,
} from './nginx.js';
import {
  accessLogsInEffect,
  childrenNamed,
  httpBlock,
  logFormats,
  matchLocation,
  parseNginxConfig,
  serverForPort,
  tokenCarryingVariablesIn,
  type NginxDirective,
} from './nginx-reader.js';
import { awsServiceDiscoveryNames, dockerContainerNames, upstreamHostsFor } from './service-hosts.js';

const TARGETS: readonly Target[] = ['docker', 'aws', 'local'];
const ROUTES: readonly WsRoute[] = ['gateway', 'backend'];

const topo = (input: TopologyInput = {}): Topology => validateTopology(input).topology;

/** A block of the config from its opening line to the matching closing brace. */
function block(config: string, opening: string): string {
  const start = config.indexOf(opening);
  expect(start, `missing block "${opening}"`).toBeGreaterThanOrEqual(0);
  let depth = 0;
  for (let i = config.indexOf('{', start); i < config.length; i++) {
    if (config[i] === '{') depth++;
    if (config[i] === '}' && --depth === 0) return config.slice(start, i + 1);
  }
  throw new Error(`unterminated block "${opening}"`);
}

/** A location of a rendered config as these tests compare it: modifier, path, directives as written. */
interface RenderedLocation {
  readonly modifier: string;
  readonly path: string;
  readonly directives: readonly string[];
}

function asLocation(d: NginxDirective): RenderedLocation {
  const [first = '', second] = d.args;
  const directives = (d.block ?? []).map((x) => x.text);
  return second === undefined ? { modifier: '', path: first, directives } : { modifier: first, path: second, directives };
}

/** The server block of a rendered config, read through the nginx reader the rules use. */
function readServer(config: string) {
  const tree = parseNginxConfig(config);
  const server = serverForPort(tree);
  expect(server, 'no server block').toBeDefined();
  const directives = childrenNamed(server!.block, 'location');
  return {
    tree,
    directives,
    locations: directives.map(asLocation),
    /** The location nginx serves `uri` from. */
    at: (uri: string) => {
      const d = matchLocation(server!, uri);
      return d && asLocation(d);
    },
  };
}

const location = (config: string, path: string): RenderedLocation => {
  const found = readServer(config).locations.find((l) => l.path === path && l.modifier === '');
  expect(found, `no plain location ${path}`).toBeDefined();
  return found!;
};

function expectReplyxError(fn: () => unknown, code: string): ReplyxError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ReplyxError);
    expect((err as ReplyxError).code).toBe(code);
    return err as ReplyxError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

describe('service host names', () => {
  it('derives container names and Cloud Map names from topology.name', () => {
    expect(dockerContainerNames({ name: 'chat' })).toEqual({
      backend: 'chat-backend',
      gateway: 'chat-ws-gateway',
      nginx: 'chat-nginx',
      redis: 'chat-redis',
      postgres: 'chat-postgres',
    });
    expect(awsServiceDiscoveryNames({ name: 'chat' })).toEqual({
      namespace: 'chat.local',
      backendService: 'backend',
      gatewayService: 'ws-gateway',
      backendHost: 'backend.chat.local',
      gatewayHost: 'ws-gateway.chat.local',
    });
  });

  it('picks upstream hosts per target', () => {
    expect(upstreamHostsFor({ name: 'replyx' }, 'docker')).toEqual({ backend: 'replyx-backend', gateway: 'replyx-ws-gateway' });
    expect(upstreamHostsFor({ name: 'replyx' }, 'aws')).toEqual({ backend: 'backend.replyx.local', gateway: 'ws-gateway.replyx.local' });
    expect(upstreamHostsFor({ name: 'replyx' }, 'local')).toEqual({ backend: '127.0.0.1', gateway: '127.0.0.1' });
  });
});

describe('planNginx', () => {
  it('by default sizes the request header buffer for a browser handshake with its token (2 KiB) and the request pool in 768-byte blocks', () => {
    expect(planNginx(topo(), 'local').request).toEqual({ headerBufferSize: '2k', poolSize: 768 });
  });

  it('refuses a request pool size nginx would refuse (not a multiple of 16, or too small)', () => {
    for (const requestPoolBytes of [1000, 128]) {
      let caught: unknown;
      try {
        topo({ nginx: { requestPoolBytes } });
      } catch (err) {
        caught = err;
      }
      expect((caught as { details?: string[] } | undefined)?.details?.join('\n'), String(requestPoolBytes)).toMatch(/^nginx\.requestPoolBytes: /);
    }
  });

  it('routes /ws/ to the gateway upstream, or to the backend upstream on wsRoute=backend', () => {
    expect(planNginx(topo({ wsRoute: 'gateway' }), 'docker').ws.upstream).toBe('replyx_ws_gateway');
    expect(planNginx(topo({ wsRoute: 'backend' }), 'docker').ws.upstream).toBe('replyx_backend');
  });

  it('marks /ws/ handshakes for the backend only on wsRoute=backend, on every target', () => {
    for (const target of ['local', 'docker', 'aws'] as const) {
      expect(planNginx(topo({ wsRoute: 'backend' }), target).ws.routeMark, target).toEqual({ header: WS_ROUTE_HEADER, value: WS_ROUTE_BACKEND });
      expect(planNginx(topo({ wsRoute: 'gateway' }), target).ws.routeMark, target).toEqual({ header: WS_ROUTE_HEADER, value: '' });
    }
  });

  it('routes /api/ to the backend on either route', () => {
    for (const wsRoute of ROUTES) expect(planNginx(topo({ wsRoute }), 'docker').api.upstream).toBe('replyx_backend');
  });

  it('takes timeouts, limits and ports from the topology', () => {
    const plan = planNginx(
      topo({
        backend: { port: 9100 },
        gateway: { port: 9101, heartbeatMs: 20_000 },
        nginx: { port: 9080, proxyReadTimeoutS: 300, proxyConnectTimeoutS: 7, apiReadTimeoutS: 45, workerShutdownTimeoutS: 12, workerConnections: 2048, clientMaxBodySize: '5m', wsProxyBufferBytes: 2048, clientHeaderBufferKb: 4, requestPoolBytes: 1024 },
      }),
      'local',
    );
    expect(plan.listen).toBe('127.0.0.1:9080');
    expect(plan.upstreams.backend.servers).toEqual([{ host: '127.0.0.1', port: 9100, address: '127.0.0.1:9100', resolve: false }]);
    expect(plan.upstreams.gateway.servers).toEqual([{ host: '127.0.0.1', port: 9101, address: '127.0.0.1:9101', resolve: false }]);
    expect(plan.ws).toEqual({ path: '/ws/', upstream: 'replyx_ws_gateway', connectTimeoutS: 7, readTimeoutS: 300, sendTimeoutS: 300, bufferSize: 2048, routeMark: { header: WS_ROUTE_HEADER, value: '' } });
    expect(plan.api).toEqual({ path: '/api/', upstream: 'replyx_backend', connectTimeoutS: 7, readTimeoutS: 45, sendTimeoutS: 45, clientMaxBodySize: '5m' });
    expect(plan.workerShutdownTimeoutS).toBe(12);
    expect(plan.workerConnections).toBe(2048);
    expect(plan.request).toEqual({ headerBufferSize: '4k', poolSize: 1024 });
    expect(plan.workerRlimitNofile).toBe(4096);
  });

  it('caps worker_rlimit_nofile at the open-file limit nginx can get, and keeps two descriptors per connection under it', () => {
    // 16,384 worker_connections want 32,768 descriptors: above a hard limit of 20,000 the master's setrlimit fails.
    expect(planNginx(topo(), 'local', { openFileLimit: 20_000 }).workerRlimitNofile).toBe(20_000);
    expect(planNginx(topo(), 'local', { openFileLimit: 1_048_576 }).workerRlimitNofile).toBe(32_768);
    expect(planNginx(topo(), 'local').workerRlimitNofile).toBe(32_768);
    expect(renderNginxConfig(topo(), 'local', { openFileLimit: 20_000 })).toContain('\nworker_rlimit_nofile 20000;\n');
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => planNginx(topo(), 'local', { openFileLimit: bad }), String(bad)).toThrow(/openFileLimit must be a whole number/);
  });

  it('keeps connections alive to the backend only, and balances the gateway by least connections', () => {
    const plan = planNginx(topo(), 'docker');
    expect(plan.upstreams.backend).toMatchObject({ name: 'replyx_backend', keepalive: DEFAULT_BACKEND_KEEPALIVE, leastConn: false });
    expect(plan.upstreams.gateway).toMatchObject({ name: 'replyx_ws_gateway', keepalive: 0, leastConn: true });
    expect(planNginx(topo(), 'docker', { backendKeepalive: 8 }).upstreams.backend.keepalive).toBe(8);
  });

  it('uses container names and Docker DNS on docker', () => {
    const plan = planNginx(topo({ name: 'chat', backend: { port: 8100 } }), 'docker');
    expect(plan.upstreams.backend.servers).toEqual([{ host: 'chat-backend', port: 8100, address: 'chat-backend:8100', resolve: true }]);
    expect(plan.upstreams.gateway.servers).toEqual([{ host: 'chat-ws-gateway', port: 8001, address: 'chat-ws-gateway:8001', resolve: true }]);
    expect(plan.resolver).toEqual({ address: '127.0.0.11', validS: NGINX_RESOLVER_VALID_S, timeoutS: 5 });
    expect(plan.clientKeepaliveTimeoutS).toBe(65);
    expect(plan.listen).toBe('8080');
    expect(plan.trustedProxyCidrs).toEqual([]);
    expect(plan.forwardedProto).toBe('$scheme');
    expect(plan).toMatchObject({ pidFile: '/var/run/nginx.pid', errorLog: '/dev/stderr', accessLog: '/dev/stdout' });
    expect(plan.tempPaths).toBeUndefined();
  });

  it('uses Cloud Map names, the VPC resolver and the load balancer client address on aws', () => {
    const plan = planNginx(topo({ name: 'chat' }), 'aws');
    expect(plan.upstreams.backend.servers[0]).toMatchObject({ address: 'backend.chat.local:8000', resolve: true });
    expect(plan.upstreams.gateway.servers[0]).toMatchObject({ address: 'ws-gateway.chat.local:8001', resolve: true });
    expect(plan.resolver?.address).toBe('169.254.169.253');
    expect(plan.trustedProxyCidrs).toEqual(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']);
    expect(plan.forwardedProto).toBe('$replyx_forwarded_proto');
    expect(plan.listen).toBe('8080');
  });

  it('uses loopback, no resolver and prefix-relative paths on local', () => {
    const plan = planNginx(topo(), 'local');
    expect(plan.resolver).toBeUndefined();
    expect(plan).toMatchObject({ pidFile: 'logs/nginx.pid', errorLog: 'logs/error.log', accessLog: 'logs/access.log' });
    expect(plan.tempPaths).toEqual({ clientBody: 'client_body_temp', proxy: 'proxy_temp', fastcgi: 'fastcgi_temp', uwsgi: 'uwsgi_temp', scgi: 'scgi_temp' });
  });

  it('puts every runtime path under prefixDir on any target', () => {
    for (const target of TARGETS) {
      const plan = planNginx(topo(), target, { prefixDir: '/tmp/x/' });
      expect(plan).toMatchObject({ pidFile: '/tmp/x/logs/nginx.pid', errorLog: '/tmp/x/logs/error.log', accessLog: '/tmp/x/logs/access.log' });
      expect(Object.values(plan.tempPaths ?? {}).every((p) => p.startsWith('/tmp/x/'))).toBe(true);
      expect(Object.keys(plan.tempPaths ?? {})).toHaveLength(5);
    }
  });

  it('overrides upstream hosts without re-resolving IP literals', () => {
    const plan = planNginx(topo(), 'aws', { upstreamHosts: { backend: '127.0.0.1', gateway: '::1' } });
    expect(plan.upstreams.backend.servers).toEqual([{ host: '127.0.0.1', port: 8000, address: '127.0.0.1:8000', resolve: false }]);
    expect(plan.upstreams.gateway.servers).toEqual([{ host: '::1', port: 8001, address: '[::1]:8001', resolve: false }]);
    const onlyOne = planNginx(topo(), 'docker', { upstreamHosts: { gateway: 'gw.internal' } });
    expect(onlyOne.upstreams.backend.servers[0]?.address).toBe('replyx-backend:8000');
    expect(onlyOne.upstreams.gateway.servers[0]?.address).toBe('gw.internal:8001');
  });

  it('rejects options that would break or inject into the config', () => {
    expectReplyxError(() => planNginx(topo(), 'docker', { upstreamHosts: { backend: 'x; include /etc/passwd' } }), 'RPX_NGINX_RENDER_OPTION');
    expectReplyxError(() => planNginx(topo(), 'docker', { upstreamHosts: { gateway: '' } }), 'RPX_NGINX_RENDER_OPTION');
    expectReplyxError(() => planNginx(topo(), 'local', { prefixDir: 'relative/dir' }), 'RPX_NGINX_RENDER_OPTION');
    expectReplyxError(() => planNginx(topo(), 'local', { prefixDir: '/tmp/$host' }), 'RPX_NGINX_RENDER_OPTION');
    expectReplyxError(() => planNginx(topo(), 'local', { prefixDir: '/tmp/a"b' }), 'RPX_NGINX_RENDER_OPTION');
    expectReplyxError(() => planNginx(topo(), 'aws', { trustedProxyCidrs: ['10.0.0.0/33'] }), 'RPX_NGINX_RENDER_OPTION');
    expectReplyxError(() => planNginx(topo(), 'aws', { trustedProxyCidrs: ['all'] }), 'RPX_NGINX_RENDER_OPTION');
    expectReplyxError(() => planNginx(topo(), 'docker', { backendKeepalive: 0 }), 'RPX_NGINX_RENDER_OPTION');
    expect(planNginx(topo(), 'aws', { trustedProxyCidrs: ['10.1.0.0/16', '2001:db8::/32', '192.0.2.7'] }).trustedProxyCidrs).toHaveLength(3);
  });

  it('refuses nginx images too old to re-resolve upstream names, only where names are resolved', () => {
    const old = topo({ nginx: { image: 'nginx:1.25-alpine' } });
    for (const target of ['docker', 'aws'] as const) {
      const err = expectReplyxError(() => planNginx(old, target), 'RPX_NGINX_IMAGE_TOO_OLD');
      expect(err.fix).toMatch(/nginx:1\.27-alpine/);
    }
    expect(() => planNginx(old, 'local')).not.toThrow();
    expect(() => planNginx(old, 'docker', { upstreamHosts: { backend: '127.0.0.1', gateway: '127.0.0.1' } })).not.toThrow();
  });

  it.each([
    ['nginx:1.27-alpine', true],
    ['nginx:1.27.3', true],
    ['nginx:1.27.2-alpine', false],
    ['nginx:1.26.3', false],
    ['nginx:1.28', true],
    ['docker.io/library/nginx:1.29.1-alpine-slim', true],
    ['public.ecr.aws/nginx/nginx:1.22', false],
    ['nginx:2.0', true],
    ['nginx', undefined],
    ['nginx:latest', undefined],
    ['nginx:stable-alpine', undefined],
    ['nginx@sha256:0123', undefined],
    ['registry:5000/nginx', undefined],
    ['my/proxy:1.0', undefined],
  ])('nginxImageSupportsResolve(%s) = %s', (image, expected) => {
    expect(nginxImageSupportsResolve(image)).toBe(expected);
  });
});

describe('renderNginxConfig text', () => {
  it('lists every local gateway replica with least_conn, and marks the one a rolling restart replaces down', () => {
    const t = topo({ target: 'local', gateway: { replicas: 3, port: 9401 } });
    const server = (port: number, down = false) => `        server 127.0.0.1:${port}${down ? ' down' : ''};`;
    const upstream = (lines: string[]) => ['upstream replyx_ws_gateway {', '        zone replyx_ws_gateway 64k;', '        least_conn;', ...lines, '    }'].join('\n');
    expect(block(renderNginxConfig(t, 'local'), 'upstream replyx_ws_gateway {')).toBe(upstream([server(9401), server(9402), server(9403)]));
    const rolling = renderNginxConfig(t, 'local', { gatewayServers: [{ port: 9401 }, { port: 9402, down: true }, { port: 9403 }] });
    expect(block(rolling, 'upstream replyx_ws_gateway {')).toBe(upstream([server(9401), server(9402, true), server(9403)]));
    expect(() => renderNginxConfig(t, 'local', { gatewayServers: [{ port: 9401, down: true }] })).toThrow(/without a server that is up/);
    // Docker and aws reach every replica through one name.
    expect(block(renderNginxConfig(topo({ target: 'docker', gateway: { replicas: 3 } }), 'docker'), 'upstream replyx_ws_gateway {')).toContain('server replyx-ws-gateway:8001 resolve;');
  });

  it('renders the docker config: container upstreams, Docker DNS, stdout logs, listen on the nginx port', () => {
    const config = renderNginxConfig(topo(), 'docker');
    expect(block(config, 'upstream replyx_backend {')).toBe(
      ['upstream replyx_backend {', '        zone replyx_backend 64k;', '        server replyx-backend:8000 resolve;', '        keepalive 32;', '        keepalive_timeout 4s;', '    }'].join('\n'),
    );
    expect(block(config, 'upstream replyx_ws_gateway {')).toBe(
      ['upstream replyx_ws_gateway {', '        zone replyx_ws_gateway 64k;', '        least_conn;', '        server replyx-ws-gateway:8001 resolve;', '    }'].join('\n'),
    );
    expect(config).toContain('\n    resolver 127.0.0.11 valid=2s ipv6=off;\n    resolver_timeout 5s;\n');
    expect(config).toContain('\n        listen 8080 default_server backlog=4096;\n');
    expect(config).toContain('\npid "/var/run/nginx.pid";\nerror_log "/dev/stderr" warn;\n');
    expect(config).toContain('\n    access_log "/dev/stdout" replyx_http;\n');
    expect(config).not.toMatch(/_temp_path|set_real_ip_from|real_ip_header/);
    expect(location(config, '/api/').directives).toContain('proxy_set_header X-Forwarded-Proto $scheme');
  });

  it('renders the aws config: Cloud Map upstreams, VPC resolver, client address from the load balancer', () => {
    const config = renderNginxConfig(topo({ name: 'chat' }), 'aws');
    expect(config).toContain('\n        server backend.chat.local:8000 resolve;\n');
    expect(config).toContain('\n        server ws-gateway.chat.local:8001 resolve;\n');
    expect(config).toContain('\n    resolver 169.254.169.253 valid=2s ipv6=off;\n');
    // Above the load balancer's idle timeout (300 s by default), so the balancer closes idle connections first.
    expect(config).toContain('\n    keepalive_timeout 305s;\n');
    expect(config).toContain('\n    set_real_ip_from 10.0.0.0/8;\n    set_real_ip_from 172.16.0.0/12;\n    set_real_ip_from 192.168.0.0/16;\n    real_ip_header X-Forwarded-For;\n    real_ip_recursive on;\n');
    expect(block(config, 'map $http_x_forwarded_proto $replyx_forwarded_proto {')).toMatch(/default \$http_x_forwarded_proto;\n\s+''\s+\$scheme;/);
    expect(location(config, '/ws/').directives).toContain('proxy_set_header X-Forwarded-Proto $replyx_forwarded_proto');
    expect(config).toContain('\n        listen 8080 default_server backlog=4096;\n');
    expect(config).toContain('\n    access_log "/dev/stdout" replyx_http;\n');
  });

  it('renders the local config: loopback upstreams, no resolver, prefix-relative paths, listen on 127.0.0.1', () => {
    const config = renderNginxConfig(topo({ nginx: { port: 18080 } }), 'local');
    expect(config).toContain('\n        server 127.0.0.1:8000;\n');
    expect(config).toContain('\n        server 127.0.0.1:8001;\n');
    expect(config).not.toMatch(/resolver|resolve;/);
    expect(config).toContain('\n        listen 127.0.0.1:18080 default_server backlog=4096;\n');
    expect(config).toContain('\npid "logs/nginx.pid";\nerror_log "logs/error.log" warn;\n');
    for (const temp of ['client_body_temp_path "client_body_temp"', 'proxy_temp_path "proxy_temp"', 'fastcgi_temp_path "fastcgi_temp"', 'uwsgi_temp_path "uwsgi_temp"', 'scgi_temp_path "scgi_temp"']) {
      expect(config).toContain(`\n    ${temp};\n`);
    }
    expect(config).not.toMatch(/^\s*daemon\b/m);
  });

  it.each(TARGETS)('routes /ws/ per wsRoute on %s, keeping both upstreams', (target) => {
    const gw = renderNginxConfig(topo({ wsRoute: 'gateway' }), target);
    const be = renderNginxConfig(topo({ wsRoute: 'backend' }), target);
    expect(location(gw, '/ws/').directives).toContain('proxy_pass http://replyx_ws_gateway');
    expect(location(be, '/ws/').directives).toContain('proxy_pass http://replyx_backend');
    for (const config of [gw, be]) {
      expect(location(config, '/api/').directives).toContain('proxy_pass http://replyx_backend');
      expect(config).toContain('upstream replyx_backend {');
      expect(config).toContain('upstream replyx_ws_gateway {');
    }
    expect(readNginxConfigHeader(gw)).toEqual({ checksum: topologyChecksum(topo({ wsRoute: 'gateway' })), target, wsRoute: 'gateway' });
    expect(readNginxConfigHeader(be).wsRoute).toBe('backend');
  });

  it('writes topology values into the directives', () => {
    const config = renderNginxConfig(
      topo({ nginx: { proxyReadTimeoutS: 600, apiReadTimeoutS: 30, proxyConnectTimeoutS: 3, workerShutdownTimeoutS: 90, workerConnections: 4096, clientMaxBodySize: '10m' } }),
      'docker',
    );
    expect(config).toContain('\nworker_shutdown_timeout 90s;\n');
    expect(config).toContain('\nworker_rlimit_nofile 8192;\n');
    expect(block(config, 'events {')).toBe('events {\n    worker_connections 4096;\n}');
    expect(location(config, '/ws/').directives).toEqual(expect.arrayContaining(['proxy_read_timeout 600s', 'proxy_send_timeout 600s', 'proxy_connect_timeout 3s']));
    expect(location(config, '/api/').directives).toEqual(
      expect.arrayContaining(['client_max_body_size 10m', 'proxy_read_timeout 30s', 'proxy_send_timeout 30s', 'proxy_connect_timeout 3s', 'proxy_set_header Connection ""']),
    );
  });

  it('answers /health itself and 404s everything unrouted', () => {
    const { at } = readServer(renderNginxConfig(topo(), 'docker'));
    expect(at('/health')?.directives).toEqual(['access_log off', 'default_type text/plain', 'return 200 "ok"']);
    expect(at('/')?.directives).toEqual(['return 404']);
    expect(at('/metrics')?.directives).toEqual(['return 404']);
  });
});

function variants(): { label: string; topology: Topology; target: Target; options: NginxRenderOptions }[] {
  const inputs: TopologyInput[] = [
    {},
    { name: 'chat', nginx: { port: 9000, proxyReadTimeoutS: 900, workerShutdownTimeoutS: 5 }, gateway: { heartbeatMs: 60_000 } },
    { backend: { workers: 1, port: 7000 }, gateway: { port: 7001, broker: 'memory' }, nginx: { proxyReadTimeoutS: 30, apiReadTimeoutS: 5 } },
  ];
  const optionSets: NginxRenderOptions[] = [{}, { upstreamHosts: { backend: '127.0.0.1', gateway: '127.0.0.1' }, prefixDir: '/tmp/replyx-nginx' }];
  const out = [];
  for (const [i, input] of inputs.entries()) {
    for (const wsRoute of ROUTES) {
      for (const target of TARGETS) {
        for (const [j, options] of optionSets.entries()) {
          out.push({ label: `topology#${i} ${target} ws->${wsRoute} options#${j}`, topology: topo({ ...input, wsRoute }), target, options });
        }
      }
    }
  }
  return out;
}

describe.each(variants())('invariants: $label', ({ topology, target, options }) => {
  const config = renderNginxConfig(topology, target, options);
  const { tree, directives, locations, at } = readServer(config);
  const wsLocations = locations.filter((l) => l.path.startsWith('/ws'));

  it('uses no regex locations and no blocks inside locations, so prefix order alone decides routing', () => {
    expect(locations.filter((l) => l.modifier === '~' || l.modifier === '~*')).toEqual([]);
    expect(directives.flatMap((l) => (l.block ?? []).filter((d) => d.block !== undefined).map((d) => `${l.text} { ${d.text} }`))).toEqual([]);
  });

  it('has a /ws/ location, and each one upgrades the connection and keeps it open past the heartbeat', () => {
    expect(wsLocations.map((l) => l.path)).toEqual(['/ws/']);
    for (const ws of wsLocations) {
      expect(ws.directives).toEqual(
        expect.arrayContaining([
          'proxy_http_version 1.1',
          'proxy_set_header Upgrade $http_upgrade',
          'proxy_set_header Connection $connection_upgrade',
          'proxy_set_header Host $host',
          'proxy_set_header X-Real-IP $remote_addr',
          'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for',
          'proxy_buffering off',
          `proxy_read_timeout ${topology.nginx.proxyReadTimeoutS}s`,
          `proxy_send_timeout ${topology.nginx.proxyReadTimeoutS}s`,
          `proxy_buffer_size ${topology.nginx.wsProxyBufferBytes}`,
        ]),
      );
      expect(ws.directives.some((d) => d.startsWith('proxy_set_header X-Forwarded-Proto '))).toBe(true);
      const readTimeout = Number(/^proxy_read_timeout (\d+)s$/.exec(ws.directives.find((d) => d.startsWith('proxy_read_timeout')) ?? '')?.[1]);
      expect(readTimeout * 1000).toBeGreaterThan(topology.gateway.heartbeatMs);
      const upstream = topology.wsRoute === 'gateway' ? 'replyx_ws_gateway' : 'replyx_backend';
      expect(ws.directives).toContain(`proxy_pass http://${upstream}`);
      // The backend's legacy /ws/ serves only handshakes nginx marks from the plan's route; otherwise the mark is cleared.
      const mark = ws.directives.filter((d) => d.startsWith(`proxy_set_header ${WS_ROUTE_HEADER} `));
      expect(mark).toEqual([`proxy_set_header ${WS_ROUTE_HEADER} "${topology.wsRoute === 'backend' ? WS_ROUTE_BACKEND : ''}"`]);
    }
  });

  it('sizes every request\'s header buffer and memory pool once, in the server block (an open WebSocket holds both)', () => {
    const server = serverForPort(tree)!;
    const named = (name: string) => (server.block ?? []).filter((d) => d.text.startsWith(`${name} `)).map((d) => d.text);
    expect(named('client_header_buffer_size')).toEqual([`client_header_buffer_size ${topology.nginx.clientHeaderBufferKb}k`]);
    expect(named('request_pool_size')).toEqual([`request_pool_size ${topology.nginx.requestPoolBytes}`]);
    expect(config.match(/client_header_buffer_size|request_pool_size|large_client_header_buffers/g)).toEqual(['client_header_buffer_size', 'request_pool_size']);
  });

  it('maps $http_upgrade to $connection_upgrade', () => {
    expect(block(config, 'map $http_upgrade $connection_upgrade {')).toMatch(/\{\s*default upgrade;\s*''\s+close;\s*\}$/);
  });

  it('never routes debug or internal paths to an upstream', () => {
    for (const uri of ['/api/debug/', '/api/debug', '/api/debug/websocket/status', '/api/debug/websocket/sync', '/internal/', '/internal', '/internal/publish']) {
      const chosen = at(uri);
      expect(chosen?.directives, uri).toEqual(['return 404']);
    }
    expect(locations.find((l) => l.path === '/api/debug/')?.modifier).toBe('^~');
    expect(locations.find((l) => l.path === '/internal/')?.modifier).toBe('^~');
    expect(at('/api/dialogs/1/messages')?.path).toBe('/api/');
    expect(at('/ws/dialogs/1')?.path).toBe('/ws/');
  });

  it('logs /ws/ requests without query strings, and no format logs queries at all', () => {
    const formats = logFormats(tree);
    expect([...formats.keys()].sort()).toEqual(['replyx_http', 'replyx_ws']);
    expect(formats.get('replyx_ws')).toContain('$uri');
    for (const [name, format] of formats) expect(tokenCarryingVariablesIn(format), name).toEqual([]);
    // Every request is logged (or not) by one of those formats, wherever nginx serves it.
    for (const log of accessLogsInEffect(tree)) expect(['off', ...formats.keys()], log.scope).toContain(log.format);
    for (const ws of wsLocations) {
      const logs = ws.directives.filter((d) => d.startsWith('access_log'));
      expect(logs).toHaveLength(1);
      expect(logs[0]).toMatch(/ replyx_ws$/);
    }
    // Request-scoped error lines quote the request line (query included): the server block logs
    // none of them, and no location sets its own level.
    for (const server of childrenNamed(httpBlock(tree), 'server')) expect(childrenNamed(server.block, 'error_log').map((d) => d.args.at(-1))).toEqual([REQUEST_ERROR_LOG_LEVEL]);
    expect(REQUEST_ERROR_LOG_LEVEL).toBe('emerg');
    for (const l of locations) expect(l.directives.filter((d) => d.startsWith('error_log')), l.path).toEqual([]);
  });

  it('limits requests to /api/ and handshakes and open sockets on /ws/ per client address, from the topology', () => {
    const http = httpBlock(tree).map((d) => d.text);
    const n = rateLimitsFor(topology, target);
    expect(http).toEqual(
      expect.arrayContaining([
        `limit_req_zone $binary_remote_addr zone=replyx_api_req:${RATE_LIMIT_ZONE_MB}m rate=${n.apiRequestsPerSecond}r/s`,
        `limit_conn_zone $binary_remote_addr zone=replyx_api_conn:${RATE_LIMIT_ZONE_MB}m`,
        `limit_req_zone $binary_remote_addr zone=replyx_ws_req:${RATE_LIMIT_ZONE_MB}m rate=${n.wsHandshakesPerSecond}r/s`,
        `limit_conn_zone $binary_remote_addr zone=replyx_ws_conn:${RATE_LIMIT_ZONE_MB}m`,
        'limit_req_status 429',
        'limit_conn_status 429',
      ]),
    );
    expect(location(config, '/api/').directives).toEqual(expect.arrayContaining([`limit_req zone=replyx_api_req burst=${n.apiBurst} nodelay`, `limit_conn replyx_api_conn ${n.apiConnectionsPerClient}`]));
    expect(location(config, '/ws/').directives).toEqual(expect.arrayContaining([`limit_req zone=replyx_ws_req burst=${n.wsHandshakeBurst} nodelay`, `limit_conn replyx_ws_conn ${n.wsConnectionsPerClient}`]));
    // Any other access_log must name one of the query-free formats (a bare one would use "combined").
    for (const line of config.split('\n').filter((l) => /^\s*access_log\s/.test(l))) {
      expect(line).toMatch(/ (replyx_http|replyx_ws);$|access_log off;$/);
    }
  });

  it('sets worker limits from the topology and leaves daemon to the caller', () => {
    expect(config).toMatch(new RegExp(`^worker_shutdown_timeout ${topology.nginx.workerShutdownTimeoutS}s;$`, 'm'));
    expect(config).toMatch(new RegExp(`^\\s+worker_connections ${topology.nginx.workerConnections};$`, 'm'));
    expect(location(config, '/api/').directives).toContain(`client_max_body_size ${topology.nginx.clientMaxBodySize}`);
    expect(config).not.toMatch(/^\s*daemon\b/m);
  });

  it('carries the topology checksum in a parseable header and is deterministic', () => {
    expect(readChecksumFromConfig(config)).toBe(topologyChecksum(topology));
    expect(config.split('\n').slice(0, 5).join('\n')).toMatch(/do not edit[\s\S]*# replyx-topology-checksum: [0-9a-f]{16}\n# replyx-target: [a-z]+\n# replyx-ws-route: [a-z]+$/);
    expect(renderNginxConfig(topology, target, options)).toBe(config);
    expect(config.endsWith('}\n')).toBe(true);
    expect(config).not.toMatch(/<%|%>|undefined|NaN|\[object|\n\n\n|[ \t]+\n/);
  });
});

describe('per-client rate limits', () => {
  it('takes per-client limits from the stack file over the target default (strict when deployed, loopback-sized locally)', () => {
    const base = topo({ target: 'docker' });
    expect(rateLimitsFor(base, 'docker')).toEqual(RATE_LIMIT_DEFAULTS.deployed);
    expect(rateLimitsFor(base, 'aws')).toEqual(RATE_LIMIT_DEFAULTS.deployed);
    expect(rateLimitsFor(base, 'local')).toEqual(RATE_LIMIT_DEFAULTS.local);
    const set = topo({ target: 'local', nginx: { apiRequestsPerSecond: 7, wsHandshakeBurst: 3 } });
    expect(rateLimitsFor(set)).toEqual({ ...RATE_LIMIT_DEFAULTS.local, apiRequestsPerSecond: 7, wsHandshakeBurst: 3 });
    expect(renderNginxConfig(topo({ target: 'docker' }), 'docker')).toContain(`rate=${RATE_LIMIT_DEFAULTS.deployed.apiRequestsPerSecond}r/s`);
  });
});

describe('checksum header', () => {
  it('changes when the topology changes, even where the routing text does not', () => {
    const a = renderNginxConfig(topo({ backend: { workers: 4 } }), 'docker');
    const b = renderNginxConfig(topo({ backend: { workers: 2 } }), 'docker');
    expect(readChecksumFromConfig(a)).not.toBe(readChecksumFromConfig(b));
    expect(readChecksumFromConfig(b)).toBe(topologyChecksum(topo({ backend: { workers: 2 } })));
    const strip = (s: string) => s.replace(/^# replyx-topology-checksum: .*$/m, '');
    expect(strip(a)).toBe(strip(b));
  });

  it('is the same for the same topology on every target (the target is its own header line)', () => {
    const checksums = TARGETS.map((t) => readChecksumFromConfig(renderNginxConfig(topo(), t)));
    expect(new Set(checksums).size).toBe(1);
  });

  it('reads nothing from configs without the header', () => {
    expect(readChecksumFromConfig('events {}\nhttp {}\n')).toBeUndefined();
    expect(readChecksumFromConfig('# replyx-topology-checksum: not-hex\n')).toBeUndefined();
    expect(readChecksumFromConfig('x # replyx-topology-checksum: 0123456789abcdef\n')).toBeUndefined();
    expect(readChecksumFromConfig('# replyx-topology-checksum: 0123456789abcdef\r\n')).toBe('0123456789abcdef');
    expect(readNginxConfigHeader('')).toEqual({});
  });
});

describe('demo pages (/demo/)', () => {
  it('are served on local by default, from the demo dir under the prefix, never on docker or aws', () => {
    const local = planNginx(topo({ target: 'local' }), 'local', { prefixDir: '/tmp/replyx-nginx' });
    expect(local.demo).toEqual({ path: DEMO_PAGES.path, root: `/tmp/replyx-nginx/${DEMO_PAGES.dir}` });
    expect(planNginx(topo({ target: 'local' }), 'local').demo).toEqual({ path: '/demo/', root: 'demo' });
    const text = renderNginxConfig(topo({ target: 'local' }), 'local', { prefixDir: '/tmp/replyx-nginx' });
    expect(block(text, 'location /demo/ {')).toContain('alias "/tmp/replyx-nginx/demo/";');
    expect(matchLocation(serverForPort(parseNginxConfig(text), 8080)!, '/demo/operator.html')?.args).toEqual(['/demo/']);
    for (const target of ['docker', 'aws'] as const) {
      expect(planNginx(topo({ target }), target).demo).toBeUndefined();
      expect(renderNginxConfig(topo({ target }), target)).not.toContain('/demo/');
    }
  });

  it('can be turned off on local, and refuse to be turned on where nginx does not carry them', () => {
    expect(demoPagesEnabled(topo({ target: 'local', nginx: { demoPages: false } }))).toBe(false);
    expect(renderNginxConfig(topo({ target: 'local', nginx: { demoPages: false } }), 'local')).not.toContain('/demo/');
    expect(() => planNginx(topo({ target: 'docker', nginx: { demoPages: true } }), 'docker')).toThrow(/nginx.demoPages is on for the docker target/);
  });
});
