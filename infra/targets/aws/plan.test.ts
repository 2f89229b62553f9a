import { DRAIN_GRACE_MS } from '../../../examples/backend/src/worker.js';
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { isReplyxError } from '../../errors.js';
import { renderNginxConfig } from '../../render/nginx.js';
import { awsServiceDiscoveryNames } from '../../render/service-hosts.js';
import { topologyFromStackText, validateTopology, type Topology, type TopologyInput } from '../../topology/index.js';
import { checkPostgresPassword, checkRedisAuthToken, databaseUrl, planData, redisUrl } from './data.js';
import { planExecutionPolicy } from './iam.js';
import { planImages } from './images.js';
import { AUTONAME_SUFFIX_LENGTH, fittedName } from './names.js';
import { planAwsNetwork, VPC_CIDR } from './network.js';
import { AWS_POSTGRES_PORT, AWS_REDIS_PORT, planSecurityGroups, securityRuleName, securityRulesFor, type AllowedFlow } from './security.js';
import { planLoadBalancer, planNames, planServices, rolledBackError } from './services.js';
import { CONTAINER_NAMES, healthCheckCommand, NGINX_START_SCRIPT, planTaskDefinitions, RDS_CA_BUNDLE_FILE, secretEnvFor, stopTimeoutFor, type TaskRefs } from './tasks.js';

const topo = (input: TopologyInput = {}): Topology => validateTopology({ target: 'aws', ...input }).topology;

const refs = (topology: Topology, overrides: Partial<TaskRefs> = {}): TaskRefs => ({
  images: { backend: 'acct.dkr.ecr.us-east-1.amazonaws.com/replyx-aws-backend@sha256:aa', gateway: 'acct.dkr.ecr.us-east-1.amazonaws.com/replyx-aws-ws-gateway@sha256:bb', nginx: topology.nginx.image },
  region: 'eu-west-1',
  logGroups: { backend: '/ecs/replyx-aws/backend', gateway: '/ecs/replyx-aws/ws-gateway', nginx: '/ecs/replyx-aws/nginx' },
  secrets: {
    databaseUrl: 'arn:aws:secretsmanager:eu-west-1:1:secret:db',
    gatewayDatabaseUrl: 'arn:aws:secretsmanager:eu-west-1:1:secret:gwdb',
    gatewayDatabasePassword: 'arn:aws:secretsmanager:eu-west-1:1:secret:gwpw',
    redisUrl: 'arn:aws:secretsmanager:eu-west-1:1:secret:redis',
    jwtSecret: 'arn:aws:secretsmanager:eu-west-1:1:secret:jwt',
    siteTokenSecret: 'arn:aws:secretsmanager:eu-west-1:1:secret:site',
    widgetTokenSecret: 'arn:aws:secretsmanager:eu-west-1:1:secret:widget',
    publishKey: 'arn:aws:secretsmanager:eu-west-1:1:secret:publish',
  },
  nginxConfig: renderNginxConfig(topology, 'aws'),
  ...overrides,
});

const envOf = (def: { environment: readonly { name: string; value: string }[] }) => Object.fromEntries(def.environment.map((e) => [e.name, e.value]));
const secretNamesOf = (def: { secrets: readonly { name: string }[] }) => def.secrets.map((s) => s.name).sort();

function cidrRange(cidr: string): [number, number] {
  const [ip = '', bits = '32'] = cidr.split('/');
  const n = ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(bits));
  return [n, n + size - 1];
}

describe('planAwsNetwork', () => {
  it('plans a VPC with a public and a private subnet in each of aws.availabilityZones zones', () => {
    const plan = planAwsNetwork(topo({ aws: { availabilityZones: 3 } }));
    expect(plan.mode).toBe('create');
    if (plan.mode !== 'create') return;
    expect(plan.cidrBlock).toBe(VPC_CIDR);
    expect(plan.zones).toHaveLength(3);
    expect(plan.natGateways).toBe('perZone');
  });

  it('passes aws.natGateways through for a created VPC', () => {
    const plan = planAwsNetwork(topo({ aws: { natGateways: 'single' } }));
    expect(plan.mode === 'create' && plan.natGateways).toBe('single');
  });

  it('keeps every subnet inside the VPC and no two subnets overlapping, up to six zones', () => {
    const plan = planAwsNetwork(topo({ aws: { availabilityZones: 6 } }));
    if (plan.mode !== 'create') throw new Error('expected a created VPC');
    const vpc = cidrRange(plan.cidrBlock);
    const ranges = plan.zones.flatMap((z) => [cidrRange(z.publicCidr), cidrRange(z.privateCidr)]);
    for (const [lo, hi] of ranges) expect(lo >= vpc[0] && hi <= vpc[1]).toBe(true);
    for (let i = 0; i < ranges.length; i++) {
      for (let j = i + 1; j < ranges.length; j++) {
        const [a, b] = [ranges[i]!, ranges[j]!];
        expect(a[1] < b[0] || b[1] < a[0]).toBe(true);
      }
    }
  });

  it('defaults to two zones (an ALB and the subnet groups need two)', () => {
    const plan = planAwsNetwork(topo());
    expect(plan.mode === 'create' && plan.zones.length).toBe(2);
  });

  it('adopts a given VPC and its subnets as they are', () => {
    const plan = planAwsNetwork(topo({ aws: { vpcId: 'vpc-1', publicSubnetIds: ['subnet-a', 'subnet-b'], privateSubnetIds: ['subnet-c', 'subnet-d'] } }));
    expect(plan).toEqual({ mode: 'existing', vpcId: 'vpc-1', publicSubnetIds: ['subnet-a', 'subnet-b'], privateSubnetIds: ['subnet-c', 'subnet-d'] });
  });

  it('rejects a given VPC with fewer than two subnets of a kind, naming the key', () => {
    const t = topo({ aws: { vpcId: 'vpc-1', publicSubnetIds: ['subnet-a'], privateSubnetIds: ['subnet-c', 'subnet-d'] } });
    let error: unknown;
    try {
      planAwsNetwork(t);
    } catch (err) {
      error = err;
    }
    expect(isReplyxError(error) && error.code).toBe('RPX_AWS_SUBNETS');
    expect((error as Error).message).toContain('aws.publicSubnetIds');
    expect((error as Error).message).not.toContain('aws.privateSubnetIds');
  });
});

describe('planSecurityGroups', () => {
  const flows = planSecurityGroups(topo(), { https: true });
  const fromInternet = (f: AllowedFlow) => !('group' in f.source);

  it('lets only the ALB take traffic from the internet, on 80 and 443, over IPv4 and IPv6', () => {
    const open = flows.filter(fromInternet);
    expect(open.every((f) => 'group' in f.destination && f.destination.group === 'alb')).toBe(true);
    expect(open.map((f) => [f.source, f.port])).toEqual([
      [{ cidrIpv4: '0.0.0.0/0' }, 80],
      [{ cidrIpv6: '::/0' }, 80],
      [{ cidrIpv4: '0.0.0.0/0' }, 443],
      [{ cidrIpv6: '::/0' }, 443],
    ]);
  });

  it('does not open 443 without a certificate', () => {
    const open = planSecurityGroups(topo(), { https: false }).filter(fromInternet);
    expect(open.map((f) => f.port)).toEqual([80, 80]);
  });

  it('reaches each tier only from the tier in front of it', () => {
    const t = topo({ nginx: { port: 8088 }, backend: { port: 9000 }, gateway: { port: 9001 } });
    const inbound = (group: string) =>
      planSecurityGroups(t, { https: true })
        .filter((f) => 'group' in f.destination && f.destination.group === group)
        .map((f) => ('group' in f.source ? `${f.source.group}:${f.port}` : `cidr:${f.port}`))
        .sort();
    expect(inbound('nginx')).toEqual(['alb:8088']);
    expect(inbound('backend')).toEqual(['nginx:9000']);
    expect(inbound('gateway')).toEqual(['nginx:9001']);
    expect(inbound('redis')).toEqual([`backend:${AWS_REDIS_PORT}`, `gateway:${AWS_REDIS_PORT}`]);
    expect(inbound('postgres')).toEqual([`backend:${AWS_POSTGRES_PORT}`, `gateway:${AWS_POSTGRES_PORT}`]);
  });

  it('lets only the tasks (never the data stores) leave the VPC, and only on 443', () => {
    const out = flows.filter((f) => !('group' in f.destination));
    expect(out.map((f) => ('group' in f.source ? f.source.group : '?')).sort()).toEqual(['backend', 'gateway', 'nginx']);
    expect(out.every((f) => f.port === 443)).toBe(true);
  });

  it('turns each group-to-group flow into an ingress and an egress rule, with unique names', () => {
    const rules = securityRulesFor(flows);
    const groupToGroup = flows.filter((f) => 'group' in f.source && 'group' in f.destination).length;
    const internetIn = flows.filter(fromInternet).length;
    const toInternet = flows.filter((f) => !('group' in f.destination)).length;
    expect(rules).toHaveLength(groupToGroup * 2 + internetIn + toInternet);
    const names = rules.map((r) => securityRuleName('replyx', r));
    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain('replyx-alb-in-any4-443');
    expect(names).toContain('replyx-nginx-in-alb-8080');
    expect(names).toContain('replyx-alb-out-nginx-8080');
  });
});

describe('planTaskDefinitions', () => {
  it('runs the backend with BACKEND_WORKERS and UVICORN_WORKERS = backend.workers', () => {
    const t = topo({ backend: { workers: 6 } });
    const [backend] = planTaskDefinitions(t, refs(t)).backend.containerDefinitions;
    expect(envOf(backend!)).toMatchObject({ BACKEND_WORKERS: '6', UVICORN_WORKERS: '6', PORT: '8000' });
  });

  it('runs the gateway as one process with the topology limits and heartbeat', () => {
    const t = topo({ gateway: { heartbeatMs: 20_000, broker: 'memory' }, limits: { maxConnections: 1234 } });
    const [gateway] = planTaskDefinitions(t, refs(t)).gateway.containerDefinitions;
    expect(envOf(gateway!)).toMatchObject({ UVICORN_WORKERS: '1', SERVICE_MODE: 'websocket', HEARTBEAT_MS: '20000', BROKER: 'memory', MAX_CONNECTIONS: '1234', PORT: '8001', HOST: '0.0.0.0' });
  });

  it('passes credentials only as Secrets Manager references, never as plain env', () => {
    const t = topo();
    const r = refs(t, { secrets: { ...refs(t).secrets, debugToken: 'arn:aws:secretsmanager:eu-west-1:1:secret:debug' } });
    const tasks = planTaskDefinitions(t, r);
    expect(secretNamesOf(tasks.backend.containerDefinitions[0]!)).toEqual(['DATABASE_URL', 'GATEWAY_DATABASE_PASSWORD', 'JWT_SECRET', 'REDIS_URL', 'SITE_TOKEN_SECRET', 'WIDGET_TOKEN_SECRET']);
    // The gateway connects as its SELECT-only role, never with the owner's URL.
    expect(tasks.gateway.containerDefinitions[0]!.secrets.find((s) => s.name === 'DATABASE_URL')!.valueFrom).toBe(r.secrets.gatewayDatabaseUrl);
    expect(secretNamesOf(tasks.gateway.containerDefinitions[0]!)).toEqual(['DATABASE_URL', 'DEBUG_TOKEN', 'JWT_SECRET', 'PUBLISH_KEY', 'REDIS_URL', 'SITE_TOKEN_SECRET', 'WIDGET_TOKEN_SECRET']);
    expect(tasks.nginx.containerDefinitions[0]!.secrets).toEqual([]);
    for (const task of Object.values(tasks)) {
      const env = envOf(task.containerDefinitions[0]!);
      for (const key of ['DATABASE_URL', 'GATEWAY_DATABASE_PASSWORD', 'REDIS_URL', 'JWT_SECRET', 'SITE_TOKEN_SECRET', 'WIDGET_TOKEN_SECRET', 'PUBLISH_KEY', 'DEBUG_TOKEN']) expect(env[key]).toBeUndefined();
    }
    expect(tasks.gateway.containerDefinitions[0]!.secrets.find((s) => s.name === 'REDIS_URL')!.valueFrom).toBe(r.secrets.redisUrl);
  });

  it('gives the gateway no DEBUG_TOKEN when none is configured', () => {
    const t = topo();
    expect(secretNamesOf(planTaskDefinitions(t, refs(t)).gateway.containerDefinitions[0]!)).not.toContain('DEBUG_TOKEN');
    expect(secretEnvFor(t, 'gateway', {}).map((s) => s.env)).not.toContain('DEBUG_TOKEN');
  });

  it('gives every container a /health check on its own port and awslogs in its own group', () => {
    const t = topo({ nginx: { port: 8090 } });
    const r = refs(t);
    const tasks = planTaskDefinitions(t, r);
    const ports = { backend: 8000, gateway: 8001, nginx: 8090 } as const;
    for (const service of ['backend', 'gateway', 'nginx'] as const) {
      const c = tasks[service].containerDefinitions[0]!;
      expect(c.name).toBe(CONTAINER_NAMES[service]);
      expect(c.healthCheck.command).toEqual(healthCheckCommand(ports[service]));
      expect(c.healthCheck.command.at(-1)).toBe(`http://127.0.0.1:${ports[service]}/health`);
      expect(c.portMappings).toEqual([{ containerPort: ports[service], protocol: 'tcp', name: 'http' }]);
      expect(c.logConfiguration).toEqual({ logDriver: 'awslogs', options: { 'awslogs-group': r.logGroups[service], 'awslogs-region': 'eu-west-1', 'awslogs-stream-prefix': CONTAINER_NAMES[service] } });
      expect(c.essential).toBe(true);
      expect(tasks[service].cpu).toBe('512');
      expect(tasks[service].memory).toBe('1024');
    }
  });

  it('delivers the aws nginx render through NGINX_CONF and checks it with nginx -t before starting', () => {
    const t = topo();
    const [nginx] = planTaskDefinitions(t, refs(t)).nginx.containerDefinitions;
    expect(envOf(nginx!).NGINX_CONF).toBe(renderNginxConfig(t, 'aws'));
    expect(nginx!.entryPoint).toEqual(['/bin/sh', '-c']);
    expect(nginx!.command).toEqual([NGINX_START_SCRIPT]);
    expect(NGINX_START_SCRIPT.indexOf('nginx -t')).toBeLessThan(NGINX_START_SCRIPT.indexOf("-g 'daemon off;'"));
  });

  it('routes nginx to the Cloud Map names the target registers', () => {
    const t = topo({ name: 'chat' });
    const names = awsServiceDiscoveryNames(t);
    const conf = envOf(planTaskDefinitions(t, refs(t)).nginx.containerDefinitions[0]!).NGINX_CONF!;
    expect(conf).toContain(`${names.backendHost}:8000`);
    expect(conf).toContain(`${names.gatewayHost}:8001`);
    expect(planNames(t, 'prod').namespace).toBe(names.namespace);
    expect(planServices(t).backend.discoveryName).toBe(names.backendService);
    expect(planServices(t).gateway.discoveryName).toBe(names.gatewayService);
  });

  it('lets the gateway drain before SIGKILL and raises file limits for WebSockets', () => {
    const t = topo({ gateway: { drainWindowMs: 30_000 }, limits: { maxConnections: 200_000 } });
    const tasks = planTaskDefinitions(t, refs(t));
    expect(tasks.gateway.containerDefinitions[0]!.stopTimeout).toBe(40);
    expect(stopTimeoutFor(topo({ gateway: { drainWindowMs: 110_000 } }), 'gateway')).toBe(120);
    // Fargate stops a container after 120 s at most: a longer drain is refused, never cut short silently.
    const base = topo();
    const tooLong = { ...base, gateway: { ...base.gateway, drainWindowMs: 111_000 } } as Topology;
    expect(() => stopTimeoutFor(tooLong, 'gateway')).toThrow(/gateway needs 121 s to stop/);
    try {
      stopTimeoutFor(tooLong, 'gateway');
    } catch (err) {
      expect(isReplyxError(err) && err.fix).toBe('set gateway.drainWindowMs to 110000 or less in the stack file');
    }
    // ECS gives the backend's workers their whole drain (in-flight requests, nginx's idle keepalive) before SIGKILL.
    expect(stopTimeoutFor(topo(), 'backend') * 1000).toBeGreaterThan(DRAIN_GRACE_MS + 3000);
  });

  it("pins nofile from the gateway's reserve (containerKernelLimits) within Fargate's bounds, and somaxconn to each listener's backlog", () => {
    const kernel = (t: Topology) => {
      const tasks = planTaskDefinitions(t, refs(t));
      return Object.fromEntries(
        (['backend', 'gateway', 'nginx'] as const).map((s) => {
          const c = tasks[s].containerDefinitions[0]!;
          return [s, { ulimits: c.ulimits, systemControls: c.systemControls }];
        }),
      );
    };
    const pinned = (n: number) => [{ name: 'nofile', softLimit: n, hardLimit: n }];
    const somaxconn = [{ namespace: 'net.core.somaxconn', value: '4096' }];
    // 200,000 connections + the gateway's 1,000 reserved descriptors; nginx: 2 per connection + 1,000.
    expect(kernel(topo({ limits: { maxConnections: 200_000 }, nginx: { workerConnections: 100_000 } }))).toEqual({
      backend: { ulimits: pinned(65_536), systemControls: undefined },
      gateway: { ulimits: pinned(201_000), systemControls: somaxconn },
      nginx: { ulimits: pinned(201_000), systemControls: somaxconn },
    });
    // Below Fargate's floor every task keeps 65,536 (Fargate's own soft default is 1,024); above its ceiling, 1,048,576.
    expect(kernel(topo())).toMatchObject({ gateway: { ulimits: pinned(65_536) }, nginx: { ulimits: pinned(65_536) } });
    expect(kernel(topo({ limits: { maxConnections: 2_000_000 } })).gateway!.ulimits).toEqual(pinned(1_048_576));
  });

  it('sizes every task from aws.taskCpu and aws.taskMemoryMb', () => {
    const t = topo({ aws: { taskCpu: 1024, taskMemoryMb: 2048 } });
    const tasks = planTaskDefinitions(t, refs(t));
    expect([tasks.backend.cpu, tasks.gateway.memory]).toEqual(['1024', '2048']);
  });
});

describe('planServices', () => {
  it('runs backend.replicas backend tasks', () => {
    expect(planServices(topo({ backend: { replicas: 3 } })).backend.desiredCount).toBe(3);
  });

  it('runs one gateway task by default', () => {
    expect(planServices(topo()).gateway.desiredCount).toBe(1);
  });

  it('runs gateway.replicas tasks with the Redis broker', () => {
    expect(planServices(topo({ gateway: { replicas: 3, broker: 'redis' } })).gateway.desiredCount).toBe(3);
  });

  it('never overlaps two gateway tasks with the in-memory broker, even during a deploy', () => {
    const g = planServices(topo({ gateway: { broker: 'memory' } })).gateway;
    expect(g.desiredCount).toBe(1);
    expect([g.deploymentMinimumHealthyPercent, g.deploymentMaximumPercent]).toEqual([0, 100]);
  });

  it('replaces one task at a time: a new task is healthy before an old one stops', () => {
    for (const replicas of [1, 2, 3, 7, 50]) {
      const plans = planServices(topo({ gateway: { replicas }, backend: { replicas } }));
      for (const plan of [plans.gateway, plans.backend, plans.nginx]) {
        expect(plan.deploymentMinimumHealthyPercent, plan.name).toBe(100);
        // ECS rounds the maximum down: exactly one task above the desired count.
        expect(Math.floor((plan.desiredCount * plan.deploymentMaximumPercent) / 100), `${plan.name} x${plan.desiredCount}`).toBe(plan.desiredCount + 1);
      }
    }
    expect(planServices(topo()).nginx).toMatchObject({ desiredCount: 2, deploymentMaximumPercent: 150 });
  });

  it('turns the circuit breaker on with rollback for every service, with a grace period', () => {
    for (const plan of Object.values(planServices(topo()))) {
      expect(plan.deploymentCircuitBreaker).toEqual({ enable: true, rollback: true });
      expect(plan.healthCheckGracePeriodSeconds).toBeGreaterThan(0);
    }
  });

  it('puts only nginx behind the load balancer and only backend and gateway in Cloud Map', () => {
    const plans = planServices(topo());
    expect(Object.values(plans).filter((p) => p.loadBalanced).map((p) => p.service)).toEqual(['nginx']);
    expect(plans.nginx.discoveryName).toBeUndefined();
    expect(plans.nginx.desiredCount).toBeGreaterThanOrEqual(2);
  });

  it('names services like the docker target names containers', () => {
    const plans = planServices(topo({ name: 'chat' }));
    expect([plans.backend.name, plans.gateway.name, plans.nginx.name]).toEqual(['chat-backend', 'chat-ws-gateway', 'chat-nginx']);
  });
});

describe('planLoadBalancer', () => {
  it('keeps idle WebSockets open: idle timeout = aws.albIdleTimeoutS, above the heartbeat', () => {
    const t = topo({ aws: { albIdleTimeoutS: 400 }, gateway: { heartbeatMs: 30_000 } });
    const lb = planLoadBalancer(t);
    expect(lb.idleTimeout).toBe(400);
    expect(lb.idleTimeout * 1000).toBeGreaterThan(t.gateway.heartbeatMs);
  });

  it('keeps a deregistered nginx task\'s connections as long as a reload keeps old workers\' WebSockets, within its stop timeout', () => {
    const t = topo({ nginx: { workerShutdownTimeoutS: 45 } });
    expect(planLoadBalancer(t).deregistrationDelay).toBe(45);
    expect(stopTimeoutFor(t, 'nginx')).toBe(55);
  });

  it('forwards HTTP when there is no certificate', () => {
    const lb = planLoadBalancer(topo());
    expect(lb.http).toEqual({ action: 'forward' });
    expect(lb.https).toBeUndefined();
  });

  it('redirects HTTP to HTTPS and serves HTTPS with the certificate when one is given', () => {
    const arn = 'arn:aws:acm:eu-west-1:1:certificate/abc';
    const lb = planLoadBalancer(topo({ aws: { certificateArn: arn } }));
    expect(lb.http).toEqual({ action: 'redirect', port: '443', protocol: 'HTTPS', statusCode: 'HTTP_301' });
    expect(lb.https).toMatchObject({ certificateArn: arn });
  });

  it('health-checks nginx on /health', () => {
    const lb = planLoadBalancer(topo({ nginx: { port: 8081 } }));
    expect(lb.healthCheck).toMatchObject({ path: '/health', matcher: '200' });
    expect(lb.targetPort).toBe(8081);
  });
});

describe('planExecutionPolicy', () => {
  const policy = planExecutionPolicy({
    logGroupArn: 'arn:aws:logs:eu-west-1:1:log-group:/ecs/x/backend',
    repositoryArns: ['arn:aws:ecr:eu-west-1:1:repository/x-backend'],
    secretArns: ['arn:aws:secretsmanager:eu-west-1:1:secret:db'],
  });

  it('allows only named actions, never a wildcard action', () => {
    for (const s of policy.Statement) for (const a of s.Action) expect(a).not.toMatch(/\*/);
  });

  it('scopes every statement to the service own resources, except the ECR login', () => {
    const wildcard = policy.Statement.filter((s) => s.Resource.includes('*'));
    expect(wildcard.map((s) => s.Action)).toEqual([['ecr:GetAuthorizationToken']]);
    expect(policy.Statement.find((s) => s.Sid === 'ReadOwnSecrets')!.Resource).toEqual(['arn:aws:secretsmanager:eu-west-1:1:secret:db']);
    expect(policy.Statement.find((s) => s.Sid === 'WriteOwnLogs')!.Resource).toEqual(['arn:aws:logs:eu-west-1:1:log-group:/ecs/x/backend:*']);
  });

  it('grants no ECR or Secrets Manager access to a service that needs none (nginx from Docker Hub)', () => {
    const p = planExecutionPolicy({ logGroupArn: 'arn:l', repositoryArns: [], secretArns: [] });
    expect(p.Statement.map((s) => s.Sid)).toEqual(['WriteOwnLogs']);
  });
});

describe('planData and connection URLs', () => {
  const data = planData(topo({ aws: { backupRetentionDays: 9 } }), 'prod');

  it('keeps Postgres private, encrypted and backed up, with a final snapshot on destroy', () => {
    expect(data.postgres).toMatchObject({ publiclyAccessible: false, storageEncrypted: true, backupRetentionPeriod: 9, skipFinalSnapshot: false, finalSnapshotIdentifier: 'replyx-prod-postgres-final' });
  });

  it('turns Redis TLS in transit and encryption at rest on', () => {
    expect(data.redis).toMatchObject({ transitEncryptionEnabled: true, transitEncryptionMode: 'required', atRestEncryptionEnabled: true, port: 6379 });
  });

  it('builds rediss:// URLs with the token URL-encoded', () => {
    expect(redisUrl('master.x.cache.amazonaws.com', 'a#b$c')).toBe('rediss://:a%23b%24c@master.x.cache.amazonaws.com:6379');
    expect(new URL(redisUrl('h', 'p%q')).password).toBe('p%25q');
  });

  it('builds postgres:// URLs that node-postgres reads back exactly', () => {
    const url = new URL(databaseUrl({ host: 'db.x.rds.amazonaws.com', user: 'replyx', password: 'p:w#d?', database: 'replyx' }));
    expect(decodeURIComponent(url.password)).toBe('p:w#d?');
    expect(url.port).toBe('5432');
    // The server certificate and name are verified against the RDS CA bundle the images carry.
    expect(url.searchParams.get('sslmode')).toBe('verify-full');
  });

  it('points node at the RDS CA bundle in the backend and gateway tasks (and nowhere else)', () => {
    const t = topo();
    const tasks = planTaskDefinitions(t, refs(t));
    for (const service of ['backend', 'gateway'] as const) expect(envOf(tasks[service].containerDefinitions[0]!).NODE_EXTRA_CA_CERTS).toBe(RDS_CA_BUNDLE_FILE);
    expect(envOf(tasks.nginx.containerDefinitions[0]!).NODE_EXTRA_CA_CERTS).toBeUndefined();
  });

  it('rejects auth tokens and passwords the AWS APIs would refuse', () => {
    expect(() => checkRedisAuthToken('short')).toThrow(/redisPassword/);
    expect(() => checkRedisAuthToken('0123456789abcdef@')).toThrow();
    expect(() => checkRedisAuthToken('0123456789abcdef')).not.toThrow();
    expect(() => checkPostgresPassword('has space in it')).toThrow(/postgresPassword/);
    expect(() => checkPostgresPassword('abc/defgh')).toThrow();
    expect(() => checkPostgresPassword('abcdefgh')).not.toThrow();
  });
});

describe('planImages', () => {
  it('builds gateway and backend into per-stack ECR repositories when no image is configured', () => {
    const images = planImages(topo(), 'prod', '/repo');
    expect(images.backend).toEqual({ kind: 'build', repository: 'replyx-prod-backend', context: '/repo', dockerfile: '/repo/examples/backend/Dockerfile' });
    expect(images.gateway).toEqual({ kind: 'build', repository: 'replyx-prod-ws-gateway', context: '/repo', dockerfile: '/repo/gateway/Dockerfile' });
    expect(images.nginx).toEqual({ kind: 'remote', image: 'nginx:1.27-alpine' });
  });

  it('takes images from config when set', () => {
    const images = planImages(topo({ backend: { image: 'ghcr.io/acme/backend:1.2' }, gateway: { image: 'ghcr.io/acme/gw:3' } }), 'prod');
    expect(images.backend).toEqual({ kind: 'remote', image: 'ghcr.io/acme/backend:1.2' });
    expect(images.gateway).toEqual({ kind: 'remote', image: 'ghcr.io/acme/gw:3' });
  });
});

describe('Pulumi.aws.example.yaml', () => {
  it('is a valid aws topology whose only warning is the certificate it leaves to the user', async () => {
    const text = await readFile(new URL('../../../Pulumi.aws.example.yaml', import.meta.url), 'utf8');
    const { topology, warnings } = topologyFromStackText(text, 'Pulumi.aws.example.yaml');
    expect(topology.target).toBe('aws');
    expect(warnings.map((w) => w.rule)).toEqual(['aws-https']);
    expect(topology.aws.albIdleTimeoutS * 1000).toBeGreaterThan(topology.gateway.heartbeatMs);
  });
});

describe('fittedName', () => {
  it('keeps short names as <base>-<suffix>', () => {
    expect(fittedName('replyx', 'alb', 32)).toBe('replyx-alb');
  });

  it('shortens long names so the random suffix still fits, keeping them distinct', () => {
    const a = fittedName('a-very-long-stack-name-for-chat1', 'alb', 32);
    const b = fittedName('a-very-long-stack-name-for-chat2', 'alb', 32);
    expect(a.length + AUTONAME_SUFFIX_LENGTH).toBeLessThanOrEqual(32);
    expect(b.length + AUTONAME_SUFFIX_LENGTH).toBeLessThanOrEqual(32);
    expect(a).not.toBe(b);
    expect(a).toMatch(/^a-very-long-sta-[0-9a-f]{4}-alb$/);
    expect(fittedName('a-very-long-stack-name-for-chat1', 'redis', 40).length + AUTONAME_SUFFIX_LENGTH).toBeLessThanOrEqual(40);
  });
});

describe('rolledBackError', () => {
  const arn = (rev: number) => `arn:aws:ecs:eu-west-1:123456789012:task-definition/replyx-aws-ws-gateway:${rev}`;
  const input = { serviceName: 'replyx-ws-gateway', logGroup: '/ecs/replyx-aws/ws-gateway', region: 'eu-west-1' };

  it('passes when the service runs the revision this deploy registered', () => {
    expect(rolledBackError({ ...input, deployed: arn(8), running: arn(8) })).toBeUndefined();
  });

  it('fails with RPX_AWS_ROLLED_BACK when the circuit breaker left the service on another revision', () => {
    const err = rolledBackError({ ...input, deployed: arn(8), running: arn(7) });
    expect(err?.code).toBe('RPX_AWS_ROLLED_BACK');
    expect(err?.message).toBe(
      'ECS service replyx-ws-gateway runs replyx-aws-ws-gateway:7, not replyx-aws-ws-gateway:8 from this deploy: its new tasks never became healthy and the deployment circuit breaker rolled it back',
    );
    expect(err?.fix).toContain('aws logs tail /ecs/replyx-aws/ws-gateway --since 30m --region eu-west-1');
  });
});
