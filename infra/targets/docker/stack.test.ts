import * as pulumi from '@pulumi/pulumi';
import { beforeEach, describe, expect, it } from 'vitest';
import { DOCKER_STACK_RESOURCE_COUNTS } from '../../../test/docker-graph.js';
import { installPulumiMocks, isSecretValue, plain, valueOf, type RecordedResource } from '../../../test/pulumi-mocks.js';
import { renderNginxConfig } from '../../render/nginx.js';
import { readMonitoringArtefacts } from '../../render/prometheus.js';
import { topologyChecksum, validateTopology, type TopologyInput } from '../../topology/index.js';
import { ReplyxDockerStack, resolveEnv, type DockerStackSecrets } from './stack.js';

// Mocks first (Pulumi's rule): every resource below registers against them.
// Gateway containers take the engine a moment to finish, so the test of the replica chain can tell
// a replica registered after its predecessor finished from one registered alongside it.
const resources: RecordedResource[] = installPulumiMocks({ delayMs: (type, name) => (type === 'docker:index/container:Container' && /-ws-gateway/.test(name) ? 40 : 0) });

const SECRETS: DockerStackSecrets = {
  jwtSecret: pulumi.secret('jwt-value'),
  siteTokenSecret: pulumi.secret('site-value'),
  widgetTokenSecret: pulumi.secret('widget-value'),
  postgresPassword: pulumi.secret('p@ss/word'),
  publishKey: pulumi.secret('publish-value'),
  redisGatewayPassword: pulumi.secret('g'.repeat(40)),
  redisPublisherPassword: pulumi.secret('u'.repeat(40)),
  redisAdminPassword: pulumi.secret('a'.repeat(40)),
  gatewayDatabasePassword: pulumi.secret('q'.repeat(40)),
};

let counter = 0;
/** Builds a stack under a unique component name and waits until every resource has registered. */
async function deploy(input: TopologyInput = {}, extra: Partial<ConstructorParameters<typeof ReplyxDockerStack>[1]> = {}) {
  const before = resources.length;
  const topology = validateTopology({ target: 'docker', ...input }).topology;
  const stack = new ReplyxDockerStack(`t${++counter}`, { topology, secrets: SECRETS, projectRoot: '/srv/replyx', ...extra });
  await Promise.all([...stack.containers.values()].map((c) => valueOf(c.id)));
  await valueOf(stack.nginxConfigSha256);
  const mine = resources.slice(before);
  const ofType = (type: string) => mine.filter((r) => r.type === type);
  const container = (name: string) => {
    const found = ofType('docker:index/container:Container').find((r) => plain(r.inputs.name) === name);
    if (!found) throw new Error(`no container ${name}`);
    return found;
  };
  const env = (name: string) =>
    Object.fromEntries(plain<string[]>(container(name).inputs.envs).map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
  return { stack, topology, mine, ofType, container, env };
}

beforeEach(() => {
  pulumi.runtime.setAllConfig({});
});

describe('ReplyxDockerStack resource graph', () => {
  it('creates the network, two volumes, three pinned remote images, two builds, five containers and the nginx config', async () => {
    const { mine, ofType } = await deploy();
    const count = (type: string) => ofType(type).length;
    for (const [type, n] of Object.entries(DOCKER_STACK_RESOURCE_COUNTS)) expect(count(type), type).toBe(n);
    expect(mine).toHaveLength(15);
    expect(ofType('docker:index/remoteImage:RemoteImage').map((r) => plain(r.inputs.name)).sort()).toEqual(['nginx:1.27-alpine', 'postgres:16-alpine', 'redis:7.2-alpine']);
    expect(ofType('docker:index/network:Network')[0]!.inputs.name).toBe('replyx-net');
    expect(ofType('docker:index/volume:Volume').map((r) => r.inputs.name).sort()).toEqual(['replyx-postgres-data', 'replyx-redis-data']);
    expect(ofType('docker:index/container:Container').map((r) => plain(r.inputs.name)).sort()).toEqual([
      'replyx-backend',
      'replyx-nginx',
      'replyx-postgres',
      'replyx-redis',
      'replyx-ws-gateway',
    ]);
  });

  it('builds gateway/ and examples/backend/ with the repository root as context, never pushing', async () => {
    const { ofType } = await deploy();
    const builds = ofType('docker:index/image:Image').map((r) => r.inputs);
    expect(builds).toMatchObject([
      { imageName: 'replyx-backend:local', skipPush: true, build: { context: '/srv/replyx', dockerfile: '/srv/replyx/examples/backend/Dockerfile' } },
      { imageName: 'replyx-ws-gateway:local', skipPush: true, build: { context: '/srv/replyx', dockerfile: '/srv/replyx/gateway/Dockerfile' } },
    ]);
  });

  it('with backend.image set, pulls it and builds only the gateway', async () => {
    const { ofType, container } = await deploy({ backend: { image: 'ghcr.io/acme/backend:2.0' } });
    expect(ofType('docker:index/image:Image').map((r) => r.inputs.imageName)).toEqual(['replyx-ws-gateway:local']);
    expect(ofType('docker:index/remoteImage:RemoteImage').map((r) => plain(r.inputs.name))).toContain('ghcr.io/acme/backend:2.0');
    expect(plain(container('replyx-backend').inputs.image)).toBe('sha256:remote-ghcr.io/acme/backend:2.0');
  });

  it('runs containers from the image ids, so a new image replaces the container', async () => {
    const { container } = await deploy();
    expect(plain(container('replyx-backend').inputs.image)).toBe('sha256:built-replyx-backend:local');
    expect(plain(container('replyx-ws-gateway').inputs.image)).toBe('sha256:built-replyx-ws-gateway:local');
    expect(plain(container('replyx-nginx').inputs.image)).toBe('sha256:remote-nginx:1.27-alpine');
  });

  it('parents every resource under the component', async () => {
    const { stack, mine } = await deploy();
    const stackUrn = await valueOf(stack.urn);
    expect(stackUrn).toContain('replyx:docker:Stack');
    // The mock URNs encode the parent's type chain: every child's URN names the component type.
    const urns = await Promise.all([...stack.containers.values()].map((c) => valueOf(c.urn)));
    for (const urn of urns) expect(urn).toContain('replyx:docker:Stack$docker:index/container:Container');
    expect(mine.filter((r) => r.type !== 'replyx:docker:Stack').length).toBe(14);
  });

  it('attaches every container to the private network with its service alias', async () => {
    const { ofType } = await deploy();
    for (const c of ofType('docker:index/container:Container')) {
      const nets = plain<{ name: string; aliases: string[] }[]>(c.inputs.networksAdvanced);
      expect(nets).toHaveLength(1);
      expect(plain(nets[0]!.name)).toBe('replyx-net');
      expect(nets[0]!.aliases).toEqual([plain(c.inputs.name)]);
    }
  });
});

describe('ReplyxDockerStack containers', () => {
  it('publishes only nginx, on topology.nginx.port', async () => {
    const { ofType } = await deploy({ nginx: { port: 8181 } });
    for (const c of ofType('docker:index/container:Container')) {
      const ports = plain<unknown[]>(c.inputs.ports) ?? [];
      if (plain(c.inputs.name) === 'replyx-nginx') expect(ports).toEqual([{ internal: 8181, external: 8181 }]);
      else expect(ports, String(plain(c.inputs.name))).toEqual([]);
    }
  });

  it('gives every container a healthcheck, restart unless-stopped and waits for healthy', async () => {
    const { ofType } = await deploy();
    for (const c of ofType('docker:index/container:Container')) {
      const hc = plain<Record<string, unknown>>(c.inputs.healthcheck);
      expect(hc.tests, String(c.inputs.name)).toEqual(expect.arrayContaining(['CMD']));
      expect(hc.interval).toMatch(/^\d+s$/);
      expect(hc.timeout).toMatch(/^\d+s$/);
      expect(hc.startPeriod).toMatch(/^\d+s$/);
      expect(hc.retries).toBeGreaterThan(0);
      expect(c.inputs.restart).toBe('unless-stopped');
      expect(c.inputs.wait).toBe(true);
      expect(c.inputs.waitTimeout).toBeGreaterThan(30);
    }
  });

  it('passes the backend worker count as BACKEND_WORKERS and UVICORN_WORKERS, and runs the gateway as one worker', async () => {
    const { env } = await deploy({ backend: { workers: 6 } });
    expect(env('replyx-backend')).toMatchObject({ BACKEND_WORKERS: '6', UVICORN_WORKERS: '6', PORT: '8000' });
    expect(env('replyx-ws-gateway')).toMatchObject({ UVICORN_WORKERS: '1', SERVICE_MODE: 'websocket', PORT: '8001', BROKER: 'redis', HEARTBEAT_MS: '25000' });
  });

  it('fills secrets into env: the URL-encoded Postgres password in DATABASE_URL, the JWT secret and publish key', async () => {
    const { env } = await deploy();
    const backend = env('replyx-backend');
    expect(backend.DATABASE_URL).toBe('postgres://replyx:p%40ss%2Fword@replyx-postgres:5433/replyx');
    expect(new URL(backend.DATABASE_URL!).password).toBe('p%40ss%2Fword');
    expect(backend.JWT_SECRET).toBe('jwt-value');
    expect(backend.REDIS_URL).toBe(`redis://replyx-publisher:${'u'.repeat(40)}@replyx-redis:6380`);
    const gateway = env('replyx-ws-gateway');
    expect(gateway).toMatchObject({ JWT_SECRET: 'jwt-value', PUBLISH_KEY: 'publish-value', DATABASE_URL: `postgres://replyx_gateway:${'q'.repeat(40)}@replyx-postgres:5433/replyx` });
    expect(backend.GATEWAY_DATABASE_PASSWORD).toBe('q'.repeat(40));
    expect(gateway.REDIS_URL).toBe(`redis://replyx-gateway:${'g'.repeat(40)}@replyx-redis:6380`);
    expect(gateway.DEBUG_TOKEN).toBeUndefined();
    expect(env('replyx-postgres')).toMatchObject({ POSTGRES_PASSWORD: 'p@ss/word', POSTGRES_USER: 'replyx', POSTGRES_DB: 'replyx' });
  });

  it('keeps env secret on every container that holds a secret, and plain on the others', async () => {
    const { container } = await deploy();
    for (const name of ['replyx-backend', 'replyx-ws-gateway', 'replyx-postgres']) expect(isSecretValue(container(name).inputs.envs), name).toBe(true);
    for (const name of ['replyx-nginx', 'replyx-redis']) expect(isSecretValue(container(name).inputs.envs), name).toBe(false);
  });

  it('passes a configured debug token to the gateway only', async () => {
    const { env } = await deploy({}, { secrets: { ...SECRETS, debugToken: pulumi.secret('dbg') } });
    expect(env('replyx-ws-gateway').DEBUG_TOKEN).toBe('dbg');
    expect(env('replyx-backend').DEBUG_TOKEN).toBeUndefined();
  });

  it('stops every container with its own signal and grace, also when Pulumi replaces or deletes it', async () => {
    const { container } = await deploy({ gateway: { drainWindowMs: 20_000 }, nginx: { workerShutdownTimeoutS: 40 } });
    const stop = (name: string) => {
      const { stopSignal, stopTimeout, destroyGraceSeconds } = container(name).inputs;
      return { stopSignal, stopTimeout, destroyGraceSeconds };
    };
    // Without destroyGraceSeconds the provider force-removes a replaced container: SIGKILL, no drain.
    expect(stop('replyx-ws-gateway')).toEqual({ stopSignal: 'SIGTERM', stopTimeout: 30, destroyGraceSeconds: 30 });
    expect(stop('replyx-nginx')).toEqual({ stopSignal: 'SIGQUIT', stopTimeout: 50, destroyGraceSeconds: 50 });
    expect(stop('replyx-backend')).toEqual({ stopSignal: 'SIGTERM', stopTimeout: 40, destroyGraceSeconds: 40 });
    expect(stop('replyx-postgres')).toEqual({ stopSignal: 'SIGINT', stopTimeout: 30, destroyGraceSeconds: 30 });
    expect(stop('replyx-redis')).toEqual({ stopSignal: 'SIGTERM', stopTimeout: 30, destroyGraceSeconds: 30 });
  });

  it("sets the gateway's and nginx's nofile ulimit and net.core.somaxconn sysctl from the plan, and nothing on the others", async () => {
    const { container } = await deploy({ limits: { maxConnections: 30_000 }, nginx: { workerConnections: 8192 } });
    const kernel = (name: string) => {
      const { ulimits, sysctls } = container(name).inputs;
      return { ulimits: plain(ulimits), sysctls: plain(sysctls) };
    };
    expect(kernel('replyx-ws-gateway')).toEqual({ ulimits: [{ name: 'nofile', soft: 31_000, hard: 31_000 }], sysctls: { 'net.core.somaxconn': '4096' } });
    expect(kernel('replyx-nginx')).toEqual({ ulimits: [{ name: 'nofile', soft: 17_384, hard: 17_384 }], sysctls: { 'net.core.somaxconn': '4096' } });
    for (const name of ['replyx-backend', 'replyx-postgres', 'replyx-redis']) expect(kernel(name)).toEqual({ ulimits: undefined, sysctls: undefined });
  });

  it('registers each gateway replica only once the previous one is finished, so a deploy replaces them one at a time', async () => {
    const { mine } = await deploy({ name: 'chain', gateway: { replicas: 3 } });
    const finishedBefore = (name: string) => mine.find((r) => r.name === name)!.finishedBefore;
    expect(finishedBefore('chain-ws-gateway')).not.toContain('chain-ws-gateway-2');
    expect(finishedBefore('chain-ws-gateway-2')).toContain('chain-ws-gateway');
    expect(finishedBefore('chain-ws-gateway-3')).toContain('chain-ws-gateway-2');
  });

  it('creates one container per replica', async () => {
    const { ofType } = await deploy({ backend: { replicas: 2 }, gateway: { replicas: 2 } });
    expect(ofType('docker:index/container:Container').map((r) => plain(r.inputs.name)).sort()).toEqual([
      'replyx-backend',
      'replyx-backend-2',
      'replyx-nginx',
      'replyx-postgres',
      'replyx-redis',
      'replyx-ws-gateway',
      'replyx-ws-gateway-2',
    ]);
  });

  it('with monitoring, adds Prometheus and Grafana with their files uploaded and ports on the host loopback', async () => {
    const { container, ofType } = await deploy({ monitoring: { enabled: true } });
    expect(ofType('docker:index/remoteImage:RemoteImage').map((r) => plain(r.inputs.name))).toEqual(expect.arrayContaining(['prom/prometheus:v3.5.0', 'grafana/grafana:12.1.0']));
    const prometheus = container('replyx-prometheus');
    expect(plain(prometheus.inputs.ports)).toEqual([{ internal: 9090, external: 9190, ip: '127.0.0.1' }]);
    const uploads = plain<{ file: string; content: string }[]>(prometheus.inputs.uploads);
    expect(uploads.map((u) => u.file)).toEqual(['/etc/prometheus/prometheus.yml', '/etc/prometheus/alerts.yml']);
    expect(uploads[1]!.content).toBe(readMonitoringArtefacts().alertRules);
    expect(plain(container('replyx-grafana').inputs.ports)).toEqual([{ internal: 3000, external: 3000, ip: '127.0.0.1' }]);
    expect(plain<{ file: string }[]>(container('replyx-grafana').inputs.uploads).map((u) => u.file)).toContain('/var/lib/grafana/dashboards/replyx-overview.json');
    // Without monitoring the five containers upload nothing.
    const plainStack = await deploy();
    expect(plain(plainStack.container('replyx-nginx').inputs.uploads)).toBeUndefined();
  });

  it('mounts the data volumes and the nginx config directory', async () => {
    const { container } = await deploy({}, { stateDir: '/var/lib/replyx/nginx' });
    expect(plain(container('replyx-postgres').inputs.mounts)).toEqual([{ type: 'volume', source: 'replyx-postgres-data', target: '/var/lib/postgresql/data' }]);
    expect(plain(container('replyx-redis').inputs.mounts)).toEqual([{ type: 'volume', source: 'replyx-redis-data', target: '/data' }]);
    expect(plain(container('replyx-nginx').inputs.mounts)).toEqual([{ type: 'bind', source: '/var/lib/replyx/nginx', target: '/etc/nginx/replyx', readOnly: true }]);
  });
});

describe('ReplyxDockerStack nginx config', () => {
  it('writes the rendered docker config to the state dir and names the container to reload', async () => {
    const { ofType, topology } = await deploy();
    const [file] = ofType('pulumi-nodejs:dynamic/replyx:NginxConfigFile');
    expect(file!.inputs).toMatchObject({
      file: '/srv/replyx/.stack/docker/nginx/nginx.conf',
      container: 'replyx-nginx',
      containerFile: '/etc/nginx/replyx/nginx.conf',
      dockerHost: '',
      content: renderNginxConfig(topology, 'docker'),
    });
    expect(typeof file!.inputs.__provider).toBe('string');
  });

  it('leaves the nginx container spec unchanged when only wsRoute changes; only the config content differs', async () => {
    const viaGateway = await deploy({ wsRoute: 'gateway', backend: { workers: 1 } });
    const viaBackend = await deploy({ wsRoute: 'backend', backend: { workers: 1 } });
    expect(viaBackend.container('replyx-nginx').inputs).toEqual(viaGateway.container('replyx-nginx').inputs);
    const content = (d: typeof viaGateway) => d.ofType('pulumi-nodejs:dynamic/replyx:NginxConfigFile')[0]!.inputs.content;
    expect(content(viaBackend)).not.toEqual(content(viaGateway));
    expect(content(viaBackend)).toContain('proxy_pass http://replyx_backend;');
  });

  it('passes the docker host to the reload', async () => {
    const { ofType } = await deploy({}, { dockerHost: 'ssh://ops@docker-host' });
    expect(ofType('pulumi-nodejs:dynamic/replyx:NginxConfigFile')[0]!.inputs.dockerHost).toBe('ssh://ops@docker-host');
  });

  it('exposes the outputs the program exports', async () => {
    const { stack, topology } = await deploy({ nginx: { port: 8090 }, backend: { replicas: 2 } });
    expect(await valueOf(stack.publicUrl)).toBe('http://localhost:8090');
    expect(await valueOf(stack.containerNames)).toEqual({
      backend: ['replyx-backend', 'replyx-backend-2'],
      gateway: ['replyx-ws-gateway'],
      nginx: ['replyx-nginx'],
      redis: ['replyx-redis'],
      postgres: ['replyx-postgres'],
    });
    expect(await valueOf(stack.wsRoute)).toBe('gateway');
    expect(await valueOf(stack.topologyChecksum)).toBe(topologyChecksum(topology));
    expect(await valueOf(stack.networkName)).toBe('replyx-net');
    expect(await valueOf(stack.nginxConfigFile)).toBe('/srv/replyx/.stack/docker/nginx/nginx.conf');
  });
});

describe('resolveEnv', () => {
  it('returns a plain Output when no secret is referenced and a secret one otherwise', async () => {
    const open = resolveEnv({ A: '1', B: 'two' }, SECRETS);
    expect(await pulumi.isSecret(open)).toBe(false);
    expect(await valueOf(open)).toEqual(['A=1', 'B=two']);
    const closed = resolveEnv({ URL: { secret: 'postgresPassword', prefix: 'x:', suffix: '@y', uriEncode: true }, K: { secret: 'publishKey' } }, SECRETS);
    expect(await pulumi.isSecret(closed)).toBe(true);
    expect(await valueOf(closed)).toEqual(['URL=x:p%40ss%2Fword@y', 'K=publish-value']);
  });

  it('refuses a reference to a secret that was not provided', () => {
    expect(() => resolveEnv({ DEBUG_TOKEN: { secret: 'debugToken' } }, SECRETS)).toThrow(/debugToken/);
  });
});
