import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DRAIN_GRACE_MS } from '../../../examples/backend/src/worker.js';
import { GRAFANA_DATASOURCE_UID } from '../../render/grafana.js';
import { readMonitoringArtefacts } from '../../render/prometheus.js';
import { dockerContainerNames } from '../../render/service-hosts.js';
import { validateTopology, type TopologyInput } from '../../topology/index.js';
import { DEFAULT_NGINX_STATE_DIR, NGINX_CONTAINER_DIR, planDockerStack, REDIS_ACL_FILE, replicaNames, type ContainerPlan, type DockerStackPlan, type ServiceKey } from './plan.js';

const ROOT = '/srv/replyx';
const topo = (input: TopologyInput = {}) => validateTopology({ target: 'docker', ...input }).topology;
const plan = (input: TopologyInput = {}, options = {}) => planDockerStack(topo(input), { projectRoot: ROOT, ...options });
const only = (p: DockerStackPlan, service: ServiceKey): ContainerPlan => {
  const found = p.containers.filter((c) => c.service === service);
  expect(found).toHaveLength(1);
  return found[0]!;
};

describe('planDockerStack: resources', () => {
  it('plans one network, two data volumes and five containers named as the contract says', () => {
    const p = plan();
    expect(p.network).toEqual({ name: 'replyx-net', driver: 'bridge' });
    expect(p.volumes).toEqual([
      { key: 'postgres', name: 'replyx-postgres-data' },
      { key: 'redis', name: 'replyx-redis-data' },
    ]);
    expect(p.containers.map((c) => c.name)).toEqual(['replyx-postgres', 'replyx-redis', 'replyx-backend', 'replyx-ws-gateway', 'replyx-nginx']);
  });

  it('uses the same container names as the nginx renderer upstreams', () => {
    const t = topo({ name: 'shop' });
    const p = planDockerStack(t, { projectRoot: ROOT });
    const names = dockerContainerNames(t);
    for (const service of ['backend', 'gateway', 'nginx', 'redis', 'postgres'] as const) {
      expect(only(p, service).name).toBe(names[service]);
      expect(only(p, service).aliases).toEqual([names[service]]);
    }
  });

  it('pins postgres, redis and nginx to the topology images and builds backend and gateway from the repo root', () => {
    const p = plan({ nginx: { image: 'nginx:1.27.4-alpine' }, redis: { image: 'redis:7.2.5' }, postgres: { image: 'postgres:16.4' } });
    expect(p.images).toEqual([
      { key: 'postgres', kind: 'remote', name: 'postgres:16.4' },
      { key: 'redis', kind: 'remote', name: 'redis:7.2.5' },
      { key: 'backend', kind: 'build', name: 'replyx-backend:local', context: ROOT, dockerfile: path.join(ROOT, 'examples/backend/Dockerfile') },
      { key: 'gateway', kind: 'build', name: 'replyx-ws-gateway:local', context: ROOT, dockerfile: path.join(ROOT, 'gateway/Dockerfile') },
      { key: 'nginx', kind: 'remote', name: 'nginx:1.27.4-alpine' },
    ]);
    for (const c of p.containers) expect(p.images.map((i) => i.key)).toContain(c.image);
  });

  it('pulls backend.image / gateway.image instead of building when they are set', () => {
    const p = plan({ backend: { image: 'ghcr.io/acme/backend:1.2.3' } });
    expect(p.images.find((i) => i.key === 'backend')).toEqual({ key: 'backend', kind: 'remote', name: 'ghcr.io/acme/backend:1.2.3' });
    expect(p.images.find((i) => i.key === 'gateway')?.kind).toBe('build');
    const both = plan({ backend: { image: 'acme/b:1' }, gateway: { image: 'acme/g:1' } });
    expect(both.images.filter((i) => i.kind === 'build')).toEqual([]);
  });

  it('defaults the build context to this checkout', () => {
    const p = planDockerStack(topo());
    const backend = p.images.find((i) => i.key === 'backend');
    expect(backend?.kind === 'build' && backend.context).toBe(path.resolve(import.meta.dirname, '../../..'));
  });

  it('prefixes every name with topology.name', () => {
    const p = plan({ name: 'chat2' });
    expect(p.network.name).toBe('chat2-net');
    expect(p.volumes.map((v) => v.name)).toEqual(['chat2-postgres-data', 'chat2-redis-data']);
    expect(p.containers.every((c) => c.name.startsWith('chat2-'))).toBe(true);
    expect(p.images.filter((i) => i.kind === 'build').map((i) => i.name)).toEqual(['chat2-backend:local', 'chat2-ws-gateway:local']);
  });

  it('orders containers so that each comes after what it depends on', () => {
    const p = plan({ backend: { replicas: 2 }, gateway: { replicas: 3 } });
    const seen = new Set<ServiceKey>();
    for (const c of p.containers) {
      for (const d of c.dependsOn) expect(seen.has(d), `${c.name} after ${d}`).toBe(true);
      seen.add(c.service);
    }
    expect(only(p, 'nginx').dependsOn).toEqual(['backend', 'gateway']);
    expect(p.containers.find((c) => c.service === 'gateway')!.dependsOn).toEqual(['redis', 'postgres', 'backend']);
    expect(p.containers.find((c) => c.service === 'backend')!.dependsOn).toEqual(['postgres', 'redis']);
    expect(only(p, 'postgres').dependsOn).toEqual([]);
    expect(only(p, 'redis').dependsOn).toEqual([]);
  });
});

describe('planDockerStack: replicas', () => {
  it('names replicas -2, -3 and gives them the service alias so nginx reaches all of them by one name', () => {
    expect(replicaNames('replyx-ws-gateway', 1)).toEqual(['replyx-ws-gateway']);
    expect(replicaNames('replyx-ws-gateway', 3)).toEqual(['replyx-ws-gateway', 'replyx-ws-gateway-2', 'replyx-ws-gateway-3']);
    const p = plan({ gateway: { replicas: 3 }, backend: { replicas: 2 } });
    const gateways = p.containers.filter((c) => c.service === 'gateway');
    expect(gateways.map((c) => c.name)).toEqual(['replyx-ws-gateway', 'replyx-ws-gateway-2', 'replyx-ws-gateway-3']);
    expect(gateways.every((g) => g.aliases.length === 1 && g.aliases[0] === 'replyx-ws-gateway')).toBe(true);
    expect(gateways.map((g) => g.env.INSTANCE_ID)).toEqual(['replyx-ws-gateway', 'replyx-ws-gateway-2', 'replyx-ws-gateway-3']);
    expect(p.containers.filter((c) => c.service === 'backend').map((c) => c.name)).toEqual(['replyx-backend', 'replyx-backend-2']);
  });
});

describe('planDockerStack: env', () => {
  it('exports backend workers as both BACKEND_WORKERS and UVICORN_WORKERS', () => {
    for (const workers of [1, 4, 7]) {
      const env = only(plan({ backend: { workers } }), 'backend').env;
      expect(env.BACKEND_WORKERS).toBe(String(workers));
      expect(env.UVICORN_WORKERS).toBe(String(workers));
    }
  });

  it('gives the backend its full env, secrets only as references', () => {
    const env = only(plan({ backend: { port: 9000 }, limits: { historyLength: 50, historyTtlS: 600 } }), 'backend').env;
    expect(env).toEqual({
      BACKEND_WORKERS: '4',
      DATABASE_URL: { secret: 'postgresPassword', prefix: 'postgres://replyx:', suffix: '@replyx-postgres:5433/replyx', uriEncode: true },
      GATEWAY_DATABASE_PASSWORD: { secret: 'gatewayDatabasePassword' },
      HISTORY_LENGTH: '50',
      HISTORY_TTL_S: '600',
      HOST: '0.0.0.0',
      JWT_SECRET: { secret: 'jwtSecret' },
      SITE_TOKEN_SECRET: { secret: 'siteTokenSecret' },
      WIDGET_TOKEN_SECRET: { secret: 'widgetTokenSecret' },
      LEGACY_WIDGET_AUTH: '0',
      LOG_LEVEL: 'info',
      PORT: '9000',
      // Demo data only on the local target unless backend.seedDemo asks for it.
      SEED_DEMO: '0',
      REDIS_URL: { secret: 'redisPublisherPassword', prefix: 'redis://replyx-publisher:', suffix: '@replyx-redis:6380', uriEncode: true },
      UVICORN_WORKERS: '4',
    });
    expect(Object.keys(env)).toEqual([...Object.keys(env)].sort());
  });

  it('runs the gateway as a single worker in websocket mode with every limit from the topology', () => {
    const p = plan({
      backend: { workers: 8 },
      gateway: { heartbeatMs: 10_000, drainWindowMs: 2_000, port: 9001, broker: 'memory' },
      limits: { maxPayloadBytes: 2048, sendBufferBytes: 65_536, maxConnections: 10, maxConnectionsPerIp: 3, handshakesPerIpPerSecond: 7, historyLength: 5, historyTtlS: 120 },
      postgres: { user: 'chat', database: 'chatdb', port: 6000 },
      redis: { port: 7000 },
    });
    expect(only(p, 'gateway').env).toEqual({
      BROKER: 'memory',
      // The gateway's SELECT-only role (migration 005), not the owner.
      DATABASE_URL: { secret: 'gatewayDatabasePassword', prefix: 'postgres://replyx_gateway:', suffix: '@replyx-postgres:6000/chatdb', uriEncode: true },
      DRAIN_WINDOW_MS: '2000',
      HANDSHAKES_PER_IP_PER_SECOND: '7',
      HEARTBEAT_MS: '10000',
      HISTORY_LENGTH: '5',
      HISTORY_TTL_S: '120',
      HOST: '0.0.0.0',
      INSTANCE_ID: 'replyx-ws-gateway',
      JWT_SECRET: { secret: 'jwtSecret' },
      SITE_TOKEN_SECRET: { secret: 'siteTokenSecret' },
      WIDGET_TOKEN_SECRET: { secret: 'widgetTokenSecret' },
      LEGACY_WIDGET_AUTH: '0',
      LOG_LEVEL: 'info',
      MAX_CONNECTIONS: '10',
      MAX_CONNECTIONS_PER_IP: '3',
      MAX_PAYLOAD_BYTES: '2048',
      PORT: '9001',
      PUBLISH_KEY: { secret: 'publishKey' },
      REDIS_URL: { secret: 'redisGatewayPassword', prefix: 'redis://replyx-gateway:', suffix: '@replyx-redis:7000', uriEncode: true },
      SEND_BUFFER_BYTES: '65536',
      SERVICE_MODE: 'websocket',
      UVICORN_WORKERS: '1',
    });
  });

  it('passes DEBUG_TOKEN to the gateway only when a debug token is configured', () => {
    expect(only(plan(), 'gateway').env.DEBUG_TOKEN).toBeUndefined();
    expect(only(plan({}, { debugToken: true }), 'gateway').env.DEBUG_TOKEN).toEqual({ secret: 'debugToken' });
    expect(only(plan({}, { debugToken: true }), 'backend').env.DEBUG_TOKEN).toBeUndefined();
  });

  it('configures postgres with its user, database, password reference and PGDATA inside the volume', () => {
    const pg = only(plan({ postgres: { user: 'chat', database: 'chatdb', port: 6000 } }), 'postgres');
    expect(pg.env).toEqual({
      PGDATA: '/var/lib/postgresql/data/pgdata',
      PGPORT: '6000',
      POSTGRES_DB: 'chatdb',
      POSTGRES_PASSWORD: { secret: 'postgresPassword' },
      POSTGRES_USER: 'chat',
    });
    expect(pg.command).toBeUndefined();
    expect(pg.mounts).toEqual([{ type: 'volume', volume: 'replyx-postgres-data', target: '/var/lib/postgresql/data' }]);
    expect((pg.env.PGDATA as string).startsWith('/var/lib/postgresql/data/')).toBe(true);
  });

  it('runs redis with maxmemory, append-only persistence on its volume and the topology port', () => {
    const redis = only(plan({ redis: { maxmemoryMb: 512, port: 7001 } }), 'redis');
    expect(redis.command).toEqual(['redis-server', '--port', '7001', '--maxmemory', '512mb', '--maxmemory-policy', 'volatile-ttl', '--appendonly', 'yes', '--dir', '/data', '--aclfile', REDIS_ACL_FILE]);
    // The ACL file holds password hashes: the component renders it from the secrets.
    expect(redis.uploads).toEqual([{ file: REDIS_ACL_FILE, content: { render: 'redisAcl' } }]);
    expect(redis.mounts).toEqual([{ type: 'volume', volume: 'replyx-redis-data', target: '/data' }]);
    expect(redis.env).toEqual({});
  });

  it('never puts a secret value in the plan: every secret-bearing env is a reference', () => {
    const p = plan({}, { debugToken: true });
    for (const key of ['JWT_SECRET', 'PUBLISH_KEY', 'POSTGRES_PASSWORD', 'DEBUG_TOKEN', 'DATABASE_URL']) {
      for (const c of p.containers) {
        const v = c.env[key];
        if (v !== undefined) expect(typeof v, `${c.name} ${key}`).toBe('object');
      }
    }
    const plainValues = p.containers.flatMap((c) => Object.values(c.env).filter((v): v is string => typeof v === 'string'));
    expect(plainValues.filter((v) => v.startsWith('postgres://'))).toEqual([]);
  });
});

describe('planDockerStack: ports', () => {
  it('publishes only nginx, on topology.nginx.port, which is also where the rendered config listens', () => {
    const p = plan({ nginx: { port: 8088 } });
    for (const c of p.containers) {
      if (c.service === 'nginx') expect(c.ports).toEqual([{ internal: 8088, external: 8088 }]);
      else expect(c.ports, c.name).toEqual([]);
    }
    expect(p.publicUrl).toBe('http://localhost:8088');
  });
});

describe('planDockerStack: health, restart, stop', () => {
  it('gives every container a healthcheck with positive timings and restart unless-stopped', () => {
    const p = plan({ backend: { replicas: 2 }, gateway: { replicas: 2 } });
    for (const c of p.containers) {
      expect(c.restart).toBe('unless-stopped');
      expect(c.healthcheck.test[0]).toBe('CMD');
      expect(c.healthcheck.test.length).toBeGreaterThan(1);
      expect(c.healthcheck.intervalS).toBeGreaterThan(0);
      expect(c.healthcheck.timeoutS).toBeGreaterThan(0);
      expect(c.healthcheck.timeoutS).toBeLessThanOrEqual(c.healthcheck.intervalS);
      expect(c.healthcheck.retries).toBeGreaterThan(0);
      expect(c.healthcheck.startPeriodS).toBeGreaterThan(0);
    }
  });

  it('probes /health of backend, gateway and nginx on their topology ports, the URL passed as an argument', () => {
    const p = plan({ backend: { port: 9000 }, gateway: { port: 9001 }, nginx: { port: 9002 } });
    const url = (s: ServiceKey) => only(p, s).healthcheck.test;
    expect(url('backend').slice(0, 3)).toEqual(['CMD', 'sh', '-c']);
    expect(url('backend').slice(4)).toEqual(['healthcheck', 'http://127.0.0.1:9000/health']);
    expect(url('gateway').slice(4)).toEqual(['healthcheck', 'http://127.0.0.1:9001/health']);
    expect(url('nginx').slice(4)).toEqual(['healthcheck', 'http://127.0.0.1:9002/health']);
    // The script is constant: the URL never appears inside it.
    expect(url('backend')[3]).toBe(url('nginx')[3]);
    expect(url('backend')[3]).not.toContain('9000');
  });

  it('checks postgres with pg_isready and redis with redis-cli on their ports', () => {
    const p = plan({ postgres: { port: 6000, user: 'chat', database: 'chatdb' }, redis: { port: 7000 } });
    expect(only(p, 'postgres').healthcheck.test).toEqual(['CMD', 'pg_isready', '-q', '-h', '127.0.0.1', '-p', '6000', '-U', 'chat', '-d', 'chatdb']);
    // Unauthenticated PING answers NOAUTH (the default user is off), which proves Redis serves.
    expect(only(p, 'redis').healthcheck.test).toEqual(['CMD', 'sh', '-c', 'redis-cli -p "$1" ping 2>&1 | grep -qE "PONG|NOAUTH"', 'healthcheck', '7000']);
  });

  it('lets the gateway drain before Docker kills it, and stops nginx gracefully', () => {
    expect(only(plan({ gateway: { drainWindowMs: 20_000 } }), 'gateway').stopTimeoutS).toBe(30);
    expect(only(plan({ gateway: { drainWindowMs: 0 } }), 'gateway').stopTimeoutS).toBe(10);
    const nginx = only(plan({ nginx: { workerShutdownTimeoutS: 45 } }), 'nginx');
    expect(nginx.stopSignal).toBe('SIGQUIT');
    // Postgres gets its fast shutdown, not the smart one that waits for pooled clients forever.
    expect(only(plan(), 'postgres').stopSignal).toBe('SIGINT');
    // The backend's workers drain for up to DRAIN_GRACE_MS (in-flight requests, nginx's idle keepalive).
    expect(only(plan(), 'backend').stopTimeoutS * 1000).toBeGreaterThan(DRAIN_GRACE_MS + 3000);
    expect(nginx.stopTimeoutS).toBe(55);
    // Redis saves its append-only file, Postgres checkpoints: neither is killed right after the signal.
    expect(only(plan(), 'redis')).toMatchObject({ stopSignal: 'SIGTERM', stopTimeoutS: 30 });
    expect(only(plan(), 'postgres').stopTimeoutS).toBe(30);
  });

  it("pins the gateway's and nginx's nofile and somaxconn from the topology (containerKernelLimits), leaving the others to the daemon", () => {
    const p = plan({ limits: { maxConnections: 20_000 }, nginx: { workerConnections: 4096 }, gateway: { replicas: 2 } });
    for (const gateway of p.containers.filter((c) => c.service === 'gateway')) expect(gateway.kernelLimits).toEqual({ nofile: 21_000, somaxconn: 4096 });
    expect(only(p, 'nginx').kernelLimits).toEqual({ nofile: 2 * 4096 + 1000, somaxconn: 4096 });
    for (const service of ['backend', 'redis', 'postgres'] as const) expect(only(p, service).kernelLimits).toBeUndefined();
  });

  it('chains replicas so a deploy replaces them one at a time', () => {
    const p = plan({ gateway: { replicas: 3 }, backend: { replicas: 2 } });
    expect(p.containers.filter((c) => c.service === 'gateway').map((c) => [c.name, c.replaceAfter])).toEqual([
      ['replyx-ws-gateway', undefined],
      ['replyx-ws-gateway-2', 'replyx-ws-gateway'],
      ['replyx-ws-gateway-3', 'replyx-ws-gateway-2'],
    ]);
    expect(p.containers.filter((c) => c.service === 'backend').map((c) => c.replaceAfter)).toEqual([undefined, 'replyx-backend']);
    // Each replica comes after the one it is chained to, so the component can wire the dependency.
    const order = p.containers.map((c) => c.name);
    for (const c of p.containers) if (c.replaceAfter !== undefined) expect(order.indexOf(c.replaceAfter)).toBeLessThan(order.indexOf(c.name));
  });

  it('labels every container with the stack and service', () => {
    for (const c of plan({ name: 'abc' }).containers) expect(c.labels).toEqual({ 'io.replyx.stack': 'abc', 'io.replyx.service': c.service });
  });
});

describe('planDockerStack: nginx config delivery', () => {
  it('mounts the state directory read-only and starts nginx with the config file from it', () => {
    const p = plan();
    const nginx = only(p, 'nginx');
    const hostDir = path.join(ROOT, DEFAULT_NGINX_STATE_DIR);
    expect(p.nginxConfig).toEqual({
      hostDir,
      hostFile: path.join(hostDir, 'nginx.conf'),
      containerDir: NGINX_CONTAINER_DIR,
      containerFile: `${NGINX_CONTAINER_DIR}/nginx.conf`,
    });
    // A directory, not the file: a file bind mount would pin the old inode after an atomic rename.
    expect(nginx.mounts).toEqual([{ type: 'bind', source: hostDir, target: NGINX_CONTAINER_DIR, readOnly: true }]);
    expect(nginx.command).toEqual(['nginx', '-c', p.nginxConfig.containerFile, '-g', 'daemon off;']);
  });

  it('resolves a relative stateDir against the project root and keeps an absolute one', () => {
    expect(plan({}, { stateDir: 'var/nginx' }).nginxConfig.hostDir).toBe(path.join(ROOT, 'var/nginx'));
    expect(plan({}, { stateDir: '/opt/replyx/nginx' }).nginxConfig.hostFile).toBe('/opt/replyx/nginx/nginx.conf');
  });

  it('gives nginx the same container spec whatever the routing', () => {
    const gateway = only(plan({ wsRoute: 'gateway', backend: { workers: 1 } }), 'nginx');
    const backend = only(plan({ wsRoute: 'backend', backend: { workers: 1 } }), 'nginx');
    expect(backend).toEqual(gateway);
  });
});

describe('planDockerStack: monitoring', () => {
  const artefacts = { alertRules: 'groups: []\n', dashboard: '{"panels":[]}\n' };

  it('adds nothing unless monitoring.enabled', () => {
    const p = plan();
    expect(p.containers.map((c) => c.service)).not.toContain('prometheus');
    expect(p.monitoringUrls).toBeUndefined();
  });

  it('adds Prometheus and Grafana, pinned, published on the host loopback only, after the services they watch', () => {
    const p = plan({ monitoring: { enabled: true, prometheusPort: 9191, grafanaPort: 3001 }, gateway: { replicas: 2 } }, { monitoring: artefacts });
    expect(p.images.slice(-2)).toEqual([
      { key: 'prometheus', kind: 'remote', name: 'prom/prometheus:v3.5.0' },
      { key: 'grafana', kind: 'remote', name: 'grafana/grafana:12.1.0' },
    ]);
    const prometheus = only(p, 'prometheus');
    const grafana = only(p, 'grafana');
    expect(p.containers.map((c) => c.name).slice(-2)).toEqual(['replyx-prometheus', 'replyx-grafana']);
    expect(prometheus.ports).toEqual([{ internal: 9090, external: 9191, ip: '127.0.0.1' }]);
    expect(grafana.ports).toEqual([{ internal: 3000, external: 3001, ip: '127.0.0.1' }]);
    expect(prometheus.dependsOn).toEqual(['backend', 'gateway']);
    expect(grafana.dependsOn).toEqual(['prometheus']);
    expect(prometheus.mounts).toEqual([{ type: 'volume', volume: 'replyx-prometheus-data', target: '/prometheus' }]);
    expect(p.volumes.map((v) => v.name)).toContain('replyx-prometheus-data');
    expect(p.monitoringUrls).toEqual({ prometheus: 'http://localhost:9191', grafana: 'http://localhost:3001' });
    // Anonymous read-only Grafana: no login form, no basic auth to reach the admin API.
    expect(grafana.env).toMatchObject({ GF_AUTH_ANONYMOUS_ENABLED: 'true', GF_AUTH_ANONYMOUS_ORG_ROLE: 'Viewer', GF_AUTH_BASIC_ENABLED: 'false', GF_AUTH_DISABLE_LOGIN_FORM: 'true' });
  });

  it('uploads a config scraping every backend and gateway container (replicas as targets of one job) with the shipped rules', () => {
    const p = plan({ monitoring: { enabled: true }, gateway: { replicas: 2 } }, { monitoring: artefacts });
    const prometheus = only(p, 'prometheus');
    const files = Object.fromEntries((prometheus.uploads ?? []).map((u) => [u.file, u.content as string]));
    expect(files['/etc/prometheus/alerts.yml']).toBe(artefacts.alertRules);
    const config = parse(files['/etc/prometheus/prometheus.yml']!) as { rule_files: string[]; scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] };
    expect(config.rule_files).toEqual(['/etc/prometheus/alerts.yml']);
    expect(Object.fromEntries(config.scrape_configs.map((j) => [j.job_name, j.static_configs[0]!.targets]))).toEqual({
      'replyx-gateway': ['replyx-ws-gateway:8001', 'replyx-ws-gateway-2:8001'],
      'replyx-backend': ['replyx-backend:8000'],
      prometheus: ['localhost:9090'],
    });
    expect(prometheus.command).toContain('--config.file=/etc/prometheus/prometheus.yml');
  });

  it('provisions Grafana with the Prometheus datasource the shipped dashboard names and the dashboard itself', () => {
    const shipped = readMonitoringArtefacts();
    const grafana = only(plan({ monitoring: { enabled: true } }), 'grafana');
    const files = Object.fromEntries((grafana.uploads ?? []).map((u) => [u.file, u.content as string]));
    expect(files['/var/lib/grafana/dashboards/replyx-overview.json']).toBe(shipped.dashboard);
    const datasources = parse(files['/etc/grafana/provisioning/datasources/replyx.yml']!) as { datasources: { uid: string; url: string; type: string }[] };
    expect(datasources.datasources).toEqual([expect.objectContaining({ uid: GRAFANA_DATASOURCE_UID, type: 'prometheus', url: 'http://replyx-prometheus:9090' })]);
    const providers = parse(files['/etc/grafana/provisioning/dashboards/replyx.yml']!) as { providers: { options: { path: string } }[] };
    expect(providers.providers[0]!.options.path).toBe('/var/lib/grafana/dashboards');
    // Every panel and query of the dashboard uses that datasource.
    const uids = new Set([...shipped.dashboard.matchAll(/"uid": "([^"]+)"/g)].map((m) => m[1]).filter((u) => u !== 'replyx-overview'));
    expect([...uids]).toEqual([GRAFANA_DATASOURCE_UID]);
  });
});
