import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { renderNginxConfig } from '../../render/nginx.js';
import { validateTopology, type Topology, type TopologyInput } from '../../topology/index.js';
import type { runReplyxProgram as RunReplyxProgram } from '../../program.js';
import type { createAwsStack as CreateAwsStack } from './stack.js';

// The AWS target under Pulumi mocks: every resource the program registers is recorded with its
// resolved inputs, and the tests assert on that graph. Mocks are set before any module that
// creates resources is imported (the imports below are dynamic).

interface Recorded {
  readonly type: string;
  readonly name: string;
  /** Inputs with secret wrappers removed. */
  readonly inputs: Record<string, unknown>;
  /** Top-level input keys that arrived as Pulumi secrets. */
  readonly secretKeys: readonly string[];
}

// How a secret value reaches the mocks: `{[SECRET_SIG]: SECRET_SIG_VALUE, value}`.
const SECRET_SIG = '4dabf18193072939515e22adb298388d';
const SECRET_SIG_VALUE = '1b47061264138c4ac30d75fd1eb44270';
const isSecret = (v: unknown): v is { value: unknown } => typeof v === 'object' && v !== null && (v as Record<string, unknown>)[SECRET_SIG] === SECRET_SIG_VALUE;
function unwrap(v: unknown): unknown {
  if (isSecret(v)) return unwrap(v.value);
  if (Array.isArray(v)) return v.map(unwrap);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrap(x)]));
  return v;
}

const resources: Recorded[] = [];
const CONFIGURED_POSTGRES_PASSWORD = 'configured-Postgres-pw-123';

// setMocks resolves once the mock monitor is installed; registrations made later wait for it.
void pulumi.runtime.setMocks(
  {
    newResource(args) {
      const raw = args.inputs as Record<string, unknown>;
      const inputs = unwrap(raw) as Record<string, unknown>;
      resources.push({ type: args.type, name: args.name, inputs, secretKeys: Object.keys(raw).filter((k) => isSecret(raw[k])) });
      const arn = `arn:aws:mock:us-east-1:123456789012:${args.type}/${args.name}`;
      const state: Record<string, unknown> = { ...inputs, arn, name: inputs.name ?? `${args.name}-physical` };
      switch (args.type) {
        case 'aws:lb/loadBalancer:LoadBalancer':
          state.dnsName = `${args.name}.us-east-1.elb.amazonaws.com`;
          state.arnSuffix = `app/${args.name}/0123456789abcdef`;
          break;
        case 'aws:ecr/repository:Repository':
          state.repositoryUrl = `123456789012.dkr.ecr.us-east-1.amazonaws.com/${String(inputs.name)}`;
          state.registryId = '123456789012';
          break;
        case 'docker:index/image:Image':
          state.repoDigest = `${String(inputs.imageName).replace(/:latest$/, '')}@sha256:${'0'.repeat(64)}`;
          break;
        case 'aws:elasticache/replicationGroup:ReplicationGroup':
          state.primaryEndpointAddress = `master.${args.name}.cache.amazonaws.com`;
          break;
        case 'aws:rds/instance:Instance':
          state.address = `${args.name}.rds.amazonaws.com`;
          break;
        case 'random:index/randomPassword:RandomPassword':
          state.result = `generated${args.name.replace(/[^a-z0-9]/gi, '')}`.padEnd(48, 'x');
          break;
        case 'aws:ecs/taskDefinition:TaskDefinition':
          state.arn = `arn:aws:ecs:us-east-1:123456789012:task-definition/${String(inputs.family)}:1`;
          break;
        case 'aws:ecs/service:Service':
          // What the provider reads back after a circuit-breaker rollback: the service is steady, on the previous revision.
          if (String(inputs.name).startsWith('rolledback-') && String(inputs.name).endsWith('-ws-gateway')) state.taskDefinition = String(inputs.taskDefinition).replace(/:1$/, ':0');
          break;
      }
      return { id: `${args.name}-id`, state };
    },
    call(args) {
      switch (args.token) {
        case 'aws:index/getAvailabilityZones:getAvailabilityZones':
          return { names: ['us-east-1a', 'us-east-1b', 'us-east-1c'], zoneIds: ['use1-az1', 'use1-az2', 'use1-az3'] };
        case 'aws:index/getRegion:getRegion':
          return { name: 'us-east-1', region: 'us-east-1' };
        case 'aws:ecr/getAuthorizationToken:getAuthorizationToken':
          return { userName: 'AWS', password: 'ecr-token', proxyEndpoint: 'https://123456789012.dkr.ecr.us-east-1.amazonaws.com' };
        default:
          return args.inputs;
      }
    },
  },
  'replyx',
  'aws',
  false,
);
pulumi.runtime.setAllConfig({ 'replyx:postgresPassword': CONFIGURED_POSTGRES_PASSWORD }, ['replyx:postgresPassword']);

// Type-only imports are erased at run time, so they do not load the modules before the mocks.
let createAwsStack: typeof CreateAwsStack;
let runReplyxProgram: typeof RunReplyxProgram;

beforeAll(async () => {
  ({ createAwsStack } = await import('./stack.js'));
  ({ runReplyxProgram } = await import('../../program.js'));
});

const topo = (input: TopologyInput): Topology => validateTopology({ target: 'aws', ...input }).topology;

function resolve<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((r) => output.apply(r));
}

/** Waits until the mocks stop seeing new registrations (inputs resolve asynchronously). */
async function settled(): Promise<void> {
  let last = -1;
  let stableFor = 0;
  while (stableFor < 5) {
    await new Promise((r) => setTimeout(r, 10));
    stableFor = resources.length === last ? stableFor + 1 : 0;
    last = resources.length;
  }
}

interface Deployed {
  readonly topology: Topology;
  readonly outputs: Awaited<ReturnType<typeof deployOutputs>>;
  readonly all: readonly Recorded[];
  of(type: string): Recorded[];
  one(type: string, nameEnd: string): Recorded;
  containers(service: string): Record<string, unknown>[];
}

async function deployOutputs(out: ReturnType<typeof CreateAwsStack>) {
  return {
    publicUrl: await resolve(out.publicUrl),
    albDnsName: await resolve(out.albDnsName),
    clusterName: await resolve(out.clusterName),
    serviceNames: await resolve(out.serviceNames),
    logGroupNames: await resolve(out.logGroupNames),
    taskDefinitionArns: await resolve(out.taskDefinitionArns),
    region: await resolve(out.region),
  };
}

/** Runs createAwsStack for a topology (each with its own name, so URNs never clash) and returns what it registered. */
async function deploy(input: TopologyInput): Promise<Deployed> {
  const topology = topo(input);
  const before = resources.length;
  const outputs = await deployOutputs(createAwsStack(topology, { stack: 'aws', projectRoot: '/repo' }));
  await settled();
  // Length-limited names are shortened for long stack names (names.ts), so match on a prefix.
  const all = resources.slice(before).filter((r) => r.name.startsWith(topology.name.slice(0, 10)));
  const of = (type: string) => all.filter((r) => r.type === type);
  return {
    topology,
    outputs,
    all,
    of,
    one(type, nameEnd) {
      const found = of(type).filter((r) => r.name.endsWith(nameEnd));
      if (found.length !== 1) throw new Error(`expected one ${type} named *${nameEnd}, found ${found.length}`);
      return found[0]!;
    },
    containers(service) {
      const td = of('aws:ecs/taskDefinition:TaskDefinition').find((r) => r.name.endsWith(`-${service}`));
      return JSON.parse(String(td!.inputs.containerDefinitions)) as Record<string, unknown>[];
    },
  };
}

const INGRESS = 'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule';
const EGRESS = 'aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule';
const SG = 'aws:ec2/securityGroup:SecurityGroup';
const SERVICE = 'aws:ecs/service:Service';

/** Maps security group ids back to their tier (alb, nginx, ...), from the group's resource name. */
function tierOfGroup(d: Deployed): (id: unknown) => string {
  const byId = new Map(d.of(SG).map((g) => [`${g.name}-id`, g.name.slice(g.name.lastIndexOf('-') + 1)]));
  return (id) => byId.get(String(id)) ?? `unknown(${String(id)})`;
}

function ingressOf(d: Deployed, tier: string) {
  const tierOf = tierOfGroup(d);
  return d
    .of(INGRESS)
    .filter((r) => tierOf(r.inputs.securityGroupId) === tier)
    .map((r) => ({ from: r.inputs.referencedSecurityGroupId !== undefined ? tierOf(r.inputs.referencedSecurityGroupId) : String(r.inputs.cidrIpv4 ?? r.inputs.cidrIpv6), port: r.inputs.fromPort, toPort: r.inputs.toPort }));
}

describe('AWS target resource graph (Pulumi mocks)', () => {
  let d: Deployed;
  let https: Deployed;
  beforeAll(async () => {
    d = await deploy({ name: 'graph' });
    https = await deploy({ name: 'tls', aws: { certificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/abc' } });
  });

  it('registers the network, data stores, secrets, images, cluster, discovery, load balancer and three services', () => {
    const count = (type: string) => d.of(type).length;
    expect(count('replyx:aws:Stack')).toBe(1);
    expect(count('replyx:aws:Network')).toBe(1);
    expect(count('replyx:aws:Data')).toBe(1);
    expect(count('replyx:aws:Services')).toBe(1);
    expect(count('aws:ec2/vpc:Vpc')).toBe(1);
    expect(count('aws:ec2/subnet:Subnet')).toBe(4);
    expect(count('aws:ec2/natGateway:NatGateway')).toBe(2);
    expect(count('aws:ec2/internetGateway:InternetGateway')).toBe(1);
    expect(count(SG)).toBe(6);
    expect(count('aws:elasticache/replicationGroup:ReplicationGroup')).toBe(1);
    expect(count('aws:rds/instance:Instance')).toBe(1);
    expect(count('aws:secretsmanager/secret:Secret')).toBe(8);
    expect(count('aws:ecr/repository:Repository')).toBe(2);
    expect(count('docker:index/image:Image')).toBe(2);
    expect(count('aws:ecs/cluster:Cluster')).toBe(1);
    expect(count('aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace')).toBe(1);
    expect(count('aws:servicediscovery/service:Service')).toBe(2);
    expect(count('aws:lb/loadBalancer:LoadBalancer')).toBe(1);
    expect(count('aws:lb/targetGroup:TargetGroup')).toBe(1);
    expect(count('aws:lb/listener:Listener')).toBe(1);
    expect(count('aws:ecs/taskDefinition:TaskDefinition')).toBe(3);
    expect(count(SERVICE)).toBe(3);
    expect(count('aws:cloudwatch/logGroup:LogGroup')).toBe(3);
    // Alarms only with monitoring.enabled.
    expect(count('aws:cloudwatch/metricAlarm:MetricAlarm')).toBe(0);
  });

  it('with monitoring, raises the CloudWatch alarms that stand for the alerts ECS and ALB metrics can express', async () => {
    const topic = 'arn:aws:sns:us-east-1:123456789012:replyx-alerts';
    const m = await deploy({ name: 'watched', monitoring: { enabled: true, alarmTopicArn: topic } });
    const alarms = new Map(m.of('aws:cloudwatch/metricAlarm:MetricAlarm').map((a) => [String(a.inputs.name), a.inputs]));
    expect([...alarms.keys()].sort()).toEqual(['watched-aws-5xx-ratio', 'watched-aws-backend-no-tasks', 'watched-aws-gateway-memory', 'watched-aws-gateway-no-tasks']);
    const noGateway = alarms.get('watched-aws-gateway-no-tasks')!;
    expect(noGateway).toMatchObject({
      namespace: 'AWS/ECS',
      metricName: 'CPUUtilization',
      statistic: 'SampleCount',
      comparisonOperator: 'LessThanThreshold',
      threshold: 1,
      treatMissingData: 'breaching',
      dimensions: { ClusterName: m.outputs.clusterName, ServiceName: m.outputs.serviceNames.gateway },
      alarmActions: [topic],
      okActions: [topic],
    });
    expect(String(noGateway.alarmDescription)).toContain('runbooks/ws-gateway-down.md');
    const ratio = alarms.get('watched-aws-5xx-ratio')!;
    const queries = ratio.metricQueries as { id: string; expression?: string; metric?: { metricName: string; dimensions: Record<string, string> } }[];
    expect(queries.map((q) => q.metric?.metricName ?? q.expression)).toEqual(['HTTPCode_Target_5XX_Count', 'RequestCount', '100 * errors / requests']);
    expect(queries[0]!.metric!.dimensions).toEqual({ LoadBalancer: expect.stringMatching(/^app\/watched.*\/0123456789abcdef$/) });
    expect(ratio).toMatchObject({ comparisonOperator: 'GreaterThanThreshold', threshold: 5, treatMissingData: 'notBreaching' });
  });

  it('spreads public and private subnets over distinct zones, private ones routed through NAT', () => {
    const subnets = d.of('aws:ec2/subnet:Subnet');
    const zones = (tier: string) => subnets.filter((s) => (s.inputs.tags as Record<string, string>).tier === tier).map((s) => s.inputs.availabilityZone);
    expect(zones('public')).toEqual(['us-east-1a', 'us-east-1b']);
    expect(zones('private')).toEqual(['us-east-1a', 'us-east-1b']);
    const privateRoutes = d.of('aws:ec2/routeTable:RouteTable').filter((r) => r.name.includes('private'));
    expect(privateRoutes).toHaveLength(2);
    for (const rt of privateRoutes) expect((rt.inputs.routes as { natGatewayId?: string }[])[0]!.natGatewayId).toMatch(/nat-\d-id$/);
  });

  it('returns the public URL, cluster, service and log group names as outputs', () => {
    expect(d.outputs.publicUrl).toBe('http://graph-alb.us-east-1.elb.amazonaws.com');
    expect(https.outputs.publicUrl).toBe('https://tls-alb.us-east-1.elb.amazonaws.com');
    expect(d.outputs.clusterName).toBe('graph-aws');
    expect(d.outputs.serviceNames).toEqual({ backend: 'graph-backend', gateway: 'graph-ws-gateway', nginx: 'graph-nginx' });
    expect(d.outputs.logGroupNames).toEqual({ backend: '/ecs/graph-aws/backend', gateway: '/ecs/graph-aws/ws-gateway', nginx: '/ecs/graph-aws/nginx' });
    expect(d.outputs.taskDefinitionArns.gateway).toBe('arn:aws:ecs:us-east-1:123456789012:task-definition/graph-aws-ws-gateway:1');
  });

  it('never puts a secret value into a stack output', () => {
    const text = JSON.stringify(d.outputs);
    const secretValues = d.of('aws:secretsmanager/secretVersion:SecretVersion').map((v) => String(v.inputs.secretString));
    expect(secretValues).toHaveLength(8);
    for (const value of [...secretValues, CONFIGURED_POSTGRES_PASSWORD, String(d.one('aws:elasticache/replicationGroup:ReplicationGroup', '-redis').inputs.authToken)]) {
      expect(text).not.toContain(value);
    }
  });

  it('registers backend and ws-gateway in the <name>.local namespace and the ECS services with them', () => {
    expect(d.one('aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace', '-namespace').inputs.name).toBe('graph.local');
    const names = d.of('aws:servicediscovery/service:Service').map((s) => s.inputs.name).sort();
    expect(names).toEqual(['backend', 'ws-gateway']);
    expect(d.one(SERVICE, '-backend').inputs.serviceRegistries).toEqual({ registryArn: expect.stringContaining('backend-discovery') as unknown });
    expect(d.one(SERVICE, '-gateway').inputs.serviceRegistries).toEqual({ registryArn: expect.stringContaining('gateway-discovery') as unknown });
    expect(d.one(SERVICE, '-nginx').inputs.serviceRegistries).toBeUndefined();
  });

  it('runs the services on Fargate in the private subnets without public IPs', () => {
    const privateIds = d.of('aws:ec2/subnet:Subnet').filter((s) => s.name.includes('private')).map((s) => `${s.name}-id`);
    for (const svc of d.of(SERVICE)) {
      expect(svc.inputs.launchType).toBe('FARGATE');
      const net = svc.inputs.networkConfiguration as { subnets: string[]; assignPublicIp: boolean };
      expect(net.assignPublicIp).toBe(false);
      expect(net.subnets).toEqual(privateIds);
    }
  });

  it('puts only nginx behind the load balancer target group', () => {
    expect(d.one(SERVICE, '-nginx').inputs.loadBalancers).toEqual([{ targetGroupArn: expect.stringContaining('graph-nginx') as unknown, containerName: 'nginx', containerPort: 8080 }]);
    expect(d.one(SERVICE, '-backend').inputs.loadBalancers).toBeUndefined();
    expect(d.one(SERVICE, '-gateway').inputs.loadBalancers).toBeUndefined();
  });

  it('times every deploy from the topology: one task at a time, 2 s DNS records, nginx drained for worker_shutdown_timeout', () => {
    for (const svc of d.of(SERVICE)) {
      const desired = svc.inputs.desiredCount as number;
      expect(svc.inputs.deploymentMinimumHealthyPercent, svc.name).toBe(100);
      expect(Math.floor((desired * (svc.inputs.deploymentMaximumPercent as number)) / 100), svc.name).toBe(desired + 1);
    }
    for (const discovery of d.of('aws:servicediscovery/service:Service')) {
      expect((discovery.inputs.dnsConfig as { dnsRecords: unknown }).dnsRecords).toEqual([{ type: 'A', ttl: 2 }]);
    }
    expect(d.one('aws:lb/targetGroup:TargetGroup', '-nginx').inputs.deregistrationDelay).toBe(d.topology.nginx.workerShutdownTimeoutS);
    const stopTimeouts = Object.fromEntries(['backend', 'gateway', 'nginx'].map((service) => [service, d.containers(service)[0]!.stopTimeout]));
    expect(stopTimeouts).toEqual({ backend: 40, gateway: Math.ceil(d.topology.gateway.drainWindowMs / 1000) + 10, nginx: d.topology.nginx.workerShutdownTimeoutS + 10 });
  });

  it('health-checks the target group on /health', () => {
    expect(d.one('aws:lb/targetGroup:TargetGroup', '-nginx').inputs).toMatchObject({ port: 8080, protocol: 'HTTP', targetType: 'ip', healthCheck: { path: '/health', matcher: '200' } });
  });

  it('forwards HTTP without a certificate; with one, redirects HTTP and serves HTTPS with it', () => {
    expect(d.one('aws:lb/listener:Listener', '-http').inputs.defaultActions).toEqual([{ type: 'forward', targetGroupArn: expect.stringContaining('nginx') as unknown }]);
    const listeners = https.of('aws:lb/listener:Listener');
    expect(listeners).toHaveLength(2);
    expect(https.one('aws:lb/listener:Listener', '-http').inputs.defaultActions).toEqual([{ type: 'redirect', redirect: { port: '443', protocol: 'HTTPS', statusCode: 'HTTP_301' } }]);
    expect(https.one('aws:lb/listener:Listener', '-https').inputs).toMatchObject({ port: 443, protocol: 'HTTPS', certificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/abc' });
  });

  it('pushes built images to ECR with the ECR token and runs them by digest', () => {
    const image = d.one('docker:index/image:Image', '-gateway');
    expect(image.inputs).toMatchObject({
      imageName: '123456789012.dkr.ecr.us-east-1.amazonaws.com/graph-aws-ws-gateway:latest',
      registry: { server: '123456789012.dkr.ecr.us-east-1.amazonaws.com/graph-aws-ws-gateway', username: 'AWS', password: 'ecr-token' },
      build: { context: '/repo', dockerfile: '/repo/gateway/Dockerfile', platform: 'linux/amd64' },
    });
    expect(d.containers('gateway')[0]!.image).toBe(`123456789012.dkr.ecr.us-east-1.amazonaws.com/graph-aws-ws-gateway@sha256:${'0'.repeat(64)}`);
  });

  it('uses configured images instead of building', async () => {
    const own = await deploy({ name: 'own', backend: { image: 'ghcr.io/acme/backend:7' }, gateway: { image: 'ghcr.io/acme/gateway:7' } });
    expect(own.of('docker:index/image:Image')).toHaveLength(0);
    expect(own.of('aws:ecr/repository:Repository')).toHaveLength(0);
    expect(own.containers('backend')[0]!.image).toBe('ghcr.io/acme/backend:7');
    expect(own.containers('gateway')[0]!.image).toBe('ghcr.io/acme/gateway:7');
  });

  it('natGateways: single builds one NAT in the first zone and routes every private zone through it', async () => {
    const one = await deploy({ name: 'onenat', aws: { availabilityZones: 3, natGateways: 'single' } });
    const nats = one.of('aws:ec2/natGateway:NatGateway');
    expect(nats.map((n) => n.name)).toEqual(['onenat-nat-0']);
    expect(one.of('aws:ec2/eip:Eip')).toHaveLength(1);
    expect(one.of('aws:ec2/subnet:Subnet')).toHaveLength(6);
    const privateRoutes = one.of('aws:ec2/routeTable:RouteTable').filter((r) => r.name.includes('private'));
    expect(privateRoutes).toHaveLength(3);
    for (const rt of privateRoutes) expect((rt.inputs.routes as { natGatewayId?: string }[])[0]!.natGatewayId).toBe('onenat-nat-0-id');
  });

  it('adopts a given VPC: no network resources, its subnets used', async () => {
    const given = await deploy({ name: 'byo', aws: { vpcId: 'vpc-9', publicSubnetIds: ['subnet-p1', 'subnet-p2'], privateSubnetIds: ['subnet-q1', 'subnet-q2'] } });
    expect(given.of('aws:ec2/vpc:Vpc')).toHaveLength(0);
    expect(given.of('aws:ec2/natGateway:NatGateway')).toHaveLength(0);
    expect(given.one('aws:lb/loadBalancer:LoadBalancer', '-alb').inputs.subnets).toEqual(['subnet-p1', 'subnet-p2']);
    expect(given.one('aws:rds/subnetGroup:SubnetGroup', '-postgres').inputs.subnetIds).toEqual(['subnet-q1', 'subnet-q2']);
    for (const sg of given.of(SG)) expect(sg.inputs.vpcId).toBe('vpc-9');
  });

  it('pins every resource to aws.region through an explicit provider when it is set', async () => {
    const pinned = await deploy({ name: 'pinned', aws: { region: 'eu-central-1' } });
    expect(pinned.one('pulumi:providers:aws', '-aws').inputs.region).toBe('eu-central-1');
    expect(pinned.outputs.region).toBe('eu-central-1');
    const options = (pinned.containers('gateway')[0]!.logConfiguration as { options: Record<string, string> }).options;
    expect(options['awslogs-region']).toBe('eu-central-1');
    expect(d.of('pulumi:providers:aws')).toHaveLength(0);
  });

  it('keeps auto-named ALB, target group and Redis names within AWS limits for the longest stack name', async () => {
    const long = await deploy({ name: 'l23456789012345678901234567890x' });
    const lengthOf = (type: string) => long.of(type)[0]!.name.length + 8;
    expect(lengthOf('aws:lb/loadBalancer:LoadBalancer')).toBeLessThanOrEqual(32);
    expect(lengthOf('aws:lb/targetGroup:TargetGroup')).toBeLessThanOrEqual(32);
    expect(lengthOf('aws:elasticache/replicationGroup:ReplicationGroup')).toBeLessThanOrEqual(40);
  });

  it('sets the backend env: desired count = backend.replicas, BACKEND_WORKERS = UVICORN_WORKERS = workers', async () => {
    const b = await deploy({ name: 'workers', backend: { workers: 3, replicas: 2 } });
    expect(b.one(SERVICE, '-backend').inputs.desiredCount).toBe(2);
    const env = Object.fromEntries((b.containers('backend')[0]!.environment as { name: string; value: string }[]).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({ BACKEND_WORKERS: '3', UVICORN_WORKERS: '3' });
  });

  describe('security invariants', () => {
    it('Postgres is not publicly accessible', () => {
      expect(d.one('aws:rds/instance:Instance', '-postgres').inputs.publiclyAccessible).toBe(false);
    });

    it('Postgres and Redis live only in the private subnets', () => {
      const privateIds = d.of('aws:ec2/subnet:Subnet').filter((s) => s.name.includes('private')).map((s) => `${s.name}-id`);
      const publicIds = d.of('aws:ec2/subnet:Subnet').filter((s) => s.name.includes('public')).map((s) => `${s.name}-id`);
      for (const group of [d.one('aws:rds/subnetGroup:SubnetGroup', '-postgres'), d.one('aws:elasticache/subnetGroup:SubnetGroup', '-redis')]) {
        expect(group.inputs.subnetIds).toEqual(privateIds);
        for (const id of publicIds) expect(group.inputs.subnetIds).not.toContain(id);
      }
    });

    it('only the ALB security group accepts traffic from 0.0.0.0/0 or ::/0, and only on 80/443', () => {
      for (const deployed of [d, https]) {
        const tierOf = tierOfGroup(deployed);
        const open = deployed.of(INGRESS).filter((r) => r.inputs.cidrIpv4 !== undefined || r.inputs.cidrIpv6 !== undefined);
        expect(open.length).toBeGreaterThan(0);
        for (const r of open) {
          expect(r.inputs.cidrIpv4 ?? r.inputs.cidrIpv6).toMatch(/^(0\.0\.0\.0\/0|::\/0)$/);
          expect(tierOf(r.inputs.securityGroupId)).toBe('alb');
          expect([80, 443]).toContain(r.inputs.fromPort);
          expect(r.inputs.toPort).toBe(r.inputs.fromPort);
        }
        // Every other ingress rule references a security group, never an address range.
        for (const r of deployed.of(INGRESS).filter((x) => !open.includes(x))) expect(r.inputs.referencedSecurityGroupId).toBeDefined();
      }
      expect(ingressOf(d, 'alb').map((r) => r.port)).toEqual([80, 80]);
      expect(ingressOf(https, 'alb').map((r) => r.port).sort()).toEqual([443, 443, 80, 80]);
    });

    it('nginx accepts traffic only from the ALB security group, on its port', () => {
      expect(ingressOf(d, 'nginx')).toEqual([{ from: 'alb', port: 8080, toPort: 8080 }]);
    });

    it('backend and gateway accept traffic only from the nginx security group', () => {
      expect(ingressOf(d, 'backend')).toEqual([{ from: 'nginx', port: 8000, toPort: 8000 }]);
      expect(ingressOf(d, 'gateway')).toEqual([{ from: 'nginx', port: 8001, toPort: 8001 }]);
    });

    it('Redis and Postgres accept traffic only from the backend and gateway task groups', () => {
      const sorted = (rules: ReturnType<typeof ingressOf>) => rules.map((r) => `${r.from}:${r.port}`).sort();
      expect(sorted(ingressOf(d, 'redis'))).toEqual(['backend:6379', 'gateway:6379']);
      expect(sorted(ingressOf(d, 'postgres'))).toEqual(['backend:5432', 'gateway:5432']);
    });

    it('Redis and Postgres have no egress at all; tasks leave the VPC only on 443', () => {
      const tierOf = tierOfGroup(d);
      const egress = d.of(EGRESS).map((r) => ({ tier: tierOf(r.inputs.securityGroupId), cidr: r.inputs.cidrIpv4, port: r.inputs.fromPort }));
      expect(egress.filter((e) => e.tier === 'redis' || e.tier === 'postgres')).toEqual([]);
      for (const e of egress.filter((x) => x.cidr !== undefined)) {
        expect(['nginx', 'backend', 'gateway']).toContain(e.tier);
        expect(e.port).toBe(443);
      }
    });

    it('every service runs with its own security group', () => {
      const tierOf = tierOfGroup(d);
      const groups = (name: string) => (d.one(SERVICE, name).inputs.networkConfiguration as { securityGroups: string[] }).securityGroups.map(tierOf);
      expect(groups('-backend')).toEqual(['backend']);
      expect(groups('-gateway')).toEqual(['gateway']);
      expect(groups('-nginx')).toEqual(['nginx']);
      expect((d.one('aws:lb/loadBalancer:LoadBalancer', '-alb').inputs.securityGroups as string[]).map(tierOf)).toEqual(['alb']);
      expect((d.one('aws:rds/instance:Instance', '-postgres').inputs.vpcSecurityGroupIds as string[]).map(tierOf)).toEqual(['postgres']);
      expect((d.one('aws:elasticache/replicationGroup:ReplicationGroup', '-redis').inputs.securityGroupIds as string[]).map(tierOf)).toEqual(['redis']);
    });

    it('Redis requires TLS and an auth token, and is encrypted at rest', () => {
      const redis = d.one('aws:elasticache/replicationGroup:ReplicationGroup', '-redis').inputs;
      expect(redis).toMatchObject({ transitEncryptionEnabled: true, transitEncryptionMode: 'required', atRestEncryptionEnabled: true });
      expect(String(redis.authToken).length).toBeGreaterThanOrEqual(32);
      expect(d.one('aws:elasticache/replicationGroup:ReplicationGroup', '-redis').secretKeys).toContain('authToken');
    });

    it('keeps every credential a Pulumi secret on its way to AWS', () => {
      expect(d.one('aws:rds/instance:Instance', '-postgres').secretKeys).toContain('password');
      const versions = d.of('aws:secretsmanager/secretVersion:SecretVersion');
      expect(versions.map((v) => v.name.slice('graph-'.length)).sort()).toEqual(['databaseUrl', 'gatewayDatabasePassword', 'gatewayDatabaseUrl', 'jwtSecret', 'publishKey', 'redisUrl', 'siteTokenSecret', 'widgetTokenSecret']);
      for (const v of versions) expect(v.secretKeys).toContain('secretString');
    });

    it('tasks get REDIS_URL = rediss://:<token>@host:6379 through Secrets Manager', () => {
      const redis = d.one('aws:elasticache/replicationGroup:ReplicationGroup', '-redis');
      const version = d.one('aws:secretsmanager/secretVersion:SecretVersion', '-redisUrl');
      expect(version.inputs.secretString).toBe(`rediss://:${String(redis.inputs.authToken)}@master.${redis.name}.cache.amazonaws.com:6379`);
      const secret = d.one('aws:secretsmanager/secret:Secret', '-redisUrl');
      for (const service of ['backend', 'gateway']) {
        const refs = d.containers(service)[0]!.secrets as { name: string; valueFrom: string }[];
        expect(refs).toContainEqual({ name: 'REDIS_URL', valueFrom: `arn:aws:mock:us-east-1:123456789012:aws:secretsmanager/secret:Secret/${secret.name}` });
      }
    });

    it('Postgres is encrypted, backed up, keeps a final snapshot, and uses the configured password', () => {
      const pg = d.one('aws:rds/instance:Instance', '-postgres').inputs;
      expect(pg).toMatchObject({ storageEncrypted: true, backupRetentionPeriod: 7, skipFinalSnapshot: false, finalSnapshotIdentifier: 'graph-aws-postgres-final', password: CONFIGURED_POSTGRES_PASSWORD });
      const url = new URL(String(d.one('aws:secretsmanager/secretVersion:SecretVersion', '-databaseUrl').inputs.secretString));
      expect(decodeURIComponent(url.password)).toBe(CONFIGURED_POSTGRES_PASSWORD);
      expect(url.hostname).toBe('graph-postgres.rds.amazonaws.com');
    });

    it('execution roles read only their own secrets and log group; task roles have no policy', () => {
      const policies = d.of('aws:iam/rolePolicy:RolePolicy');
      expect(policies.map((p) => p.name).sort()).toEqual(['graph-backend-exec', 'graph-gateway-exec', 'graph-nginx-exec']);
      const secretsOf = (name: string) => {
        const doc = JSON.parse(String(d.one('aws:iam/rolePolicy:RolePolicy', name).inputs.policy)) as { Statement: { Sid: string; Action: string[]; Resource: string[] }[] };
        for (const s of doc.Statement) for (const a of s.Action) expect(a).not.toContain('*');
        return (doc.Statement.find((s) => s.Sid === 'ReadOwnSecrets')?.Resource ?? []).map((arn) => arn.slice(arn.lastIndexOf('/') + 1)).sort();
      };
      expect(secretsOf('-backend-exec')).toEqual(['graph-databaseUrl', 'graph-gatewayDatabasePassword', 'graph-jwtSecret', 'graph-redisUrl', 'graph-siteTokenSecret', 'graph-widgetTokenSecret']);
      // The gateway's task cannot read the owner's URL: only its SELECT-only role's.
      expect(secretsOf('-gateway-exec')).toEqual(['graph-gatewayDatabaseUrl', 'graph-jwtSecret', 'graph-publishKey', 'graph-redisUrl', 'graph-siteTokenSecret', 'graph-widgetTokenSecret']);
      expect(secretsOf('-nginx-exec')).toEqual([]);
      const taskRoles = d.of('aws:iam/role:Role').filter((r) => r.name.endsWith('-task'));
      expect(taskRoles).toHaveLength(3);
      for (const r of taskRoles) expect(r.inputs.managedPolicyArns ?? []).toEqual([]);
      expect(d.of('aws:iam/rolePolicyAttachment:RolePolicyAttachment')).toHaveLength(0);
      for (const r of d.of('aws:iam/role:Role')) expect(JSON.parse(String(r.inputs.assumeRolePolicy))).toMatchObject({ Statement: [{ Principal: { Service: 'ecs-tasks.amazonaws.com' } }] });
    });
  });

  it('keeps a gateway at one task unless the broker is Redis with replicas', async () => {
    expect(d.one(SERVICE, '-gateway').inputs.desiredCount).toBe(1);
    const memory = await deploy({ name: 'memory', gateway: { broker: 'memory' } });
    expect(memory.one(SERVICE, '-gateway').inputs).toMatchObject({ desiredCount: 1, deploymentMaximumPercent: 100, deploymentMinimumHealthyPercent: 0 });
    const scaled = await deploy({ name: 'scaled', gateway: { broker: 'redis', replicas: 3 } });
    expect(scaled.one(SERVICE, '-gateway').inputs.desiredCount).toBe(3);
  });

  it('sets the ALB idle timeout to aws.albIdleTimeoutS, above the heartbeat', () => {
    const idle = d.one('aws:lb/loadBalancer:LoadBalancer', '-alb').inputs.idleTimeout as number;
    expect(idle).toBe(d.topology.aws.albIdleTimeoutS);
    expect(idle * 1000).toBeGreaterThan(d.topology.gateway.heartbeatMs);
  });

  it('turns the deployment circuit breaker on with rollback, with a health-check grace period', () => {
    for (const svc of d.of(SERVICE)) {
      expect(svc.inputs.deploymentCircuitBreaker).toEqual({ enable: true, rollback: true });
      expect(svc.inputs.healthCheckGracePeriodSeconds).toBeGreaterThan(0);
      expect(svc.inputs.waitForSteadyState).toBe(true);
    }
  });

  it('gives every container a health check', () => {
    for (const service of ['backend', 'gateway', 'nginx']) {
      const hc = d.containers(service)[0]!.healthCheck as { command: string[] };
      expect(hc.command.slice(0, 3)).toEqual(['CMD', 'sh', '-c']);
      expect(hc.command.at(-1)).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/health$/);
    }
  });

  it('sets log retention on every log group and sends each container to its own', () => {
    const groups = d.of('aws:cloudwatch/logGroup:LogGroup');
    for (const g of groups) expect(g.inputs.retentionInDays).toBe(14);
    const custom = d.topology.aws.logRetentionDays;
    expect(custom).toBe(14);
    for (const service of ['backend', 'gateway', 'nginx']) {
      const options = (d.containers(service)[0]!.logConfiguration as { options: Record<string, string> }).options;
      expect(groups.map((g) => g.inputs.name)).toContain(options['awslogs-group']);
      expect(options['awslogs-region']).toBe('us-east-1');
    }
  });

  it('ships the nginx config that renderNginxConfig(topology, "aws") produces', () => {
    const env = d.containers('nginx')[0]!.environment as { name: string; value: string }[];
    expect(env.find((e) => e.name === 'NGINX_CONF')!.value).toBe(renderNginxConfig(d.topology, 'aws'));
  });

  it('ships a new nginx config when the route changes (wsRoute=backend)', async () => {
    const rolled = await deploy({ name: 'rolled', wsRoute: 'backend', backend: { workers: 1 } });
    const conf = (rolled.containers('nginx')[0]!.environment as { name: string; value: string }[]).find((e) => e.name === 'NGINX_CONF')!.value;
    expect(conf).toBe(renderNginxConfig(rolled.topology, 'aws'));
    expect(conf).toContain('# replyx-ws-route: backend');
  });
});

describe('a broken topology fails before any resource is registered', () => {
  it('through the Pulumi program: albIdleTimeoutS below the heartbeat', async () => {
    const before = resources.length;
    await expect(
      runReplyxProgram({ 'replyx:target': 'aws', 'replyx:name': 'broken', 'replyx:aws': JSON.stringify({ albIdleTimeoutS: 20 }), 'replyx:gateway': JSON.stringify({ heartbeatMs: 25_000 }) }),
    ).rejects.toThrow(/aws\.albIdleTimeoutS|RPX_TOPOLOGY_INVALID/);
    await settled();
    expect(resources.length).toBe(before);
  });

  it('in createAwsStack, for a hand-built topology object that skipped validation', async () => {
    const valid = topo({ name: 'handmade' });
    const broken = { ...valid, aws: { ...valid.aws, albIdleTimeoutS: 10 } } as Topology;
    const before = resources.length;
    expect(() => createAwsStack(broken, { stack: 'aws' })).toThrow(/aws\.albIdleTimeoutS|problem/);
    await settled();
    expect(resources.length).toBe(before);
  });

  it('in createAwsStack, for a topology of another target', async () => {
    const before = resources.length;
    expect(() => createAwsStack(validateTopology({ name: 'dockerish', target: 'docker' }).topology, { stack: 'aws' })).toThrow(/target/);
    await settled();
    expect(resources.length).toBe(before);
  });

  it('fails the deploy with RPX_AWS_ROLLED_BACK when a service settled on another revision than it registered', async () => {
    // The failure reaches the engine as the component's outputs failing to serialize, which is
    // how `pulumi up` fails; here those rejections are collected instead of failing the test run.
    const vitestListeners = process.listeners('unhandledRejection');
    process.removeAllListeners('unhandledRejection');
    const rejections: string[] = [];
    process.on('unhandledRejection', (reason) => rejections.push(String(reason)));
    try {
      const out = createAwsStack(topo({ name: 'rolledback' }), { stack: 'aws', projectRoot: '/repo' });
      const arns = (out.taskDefinitionArns as unknown as { promise(): Promise<unknown> }).promise();
      await expect(arns).rejects.toThrow(/RPX_AWS_ROLLED_BACK: ECS service rolledback-ws-gateway runs rolledback-aws-ws-gateway:0, not rolledback-aws-ws-gateway:1/);
      await settled();
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      process.removeAllListeners('unhandledRejection');
      for (const listener of vitestListeners) process.on('unhandledRejection', listener);
    }
    expect(rejections.length).toBeGreaterThan(0);
    for (const r of rejections) expect(r).toMatch(/RPX_AWS_ROLLED_BACK: ECS service rolledback-ws-gateway/);
  });

  it('deploys through the Pulumi program when the topology is valid', async () => {
    const outputs = await runReplyxProgram({ 'replyx:target': 'aws', 'replyx:name': 'viaprogram' });
    expect(outputs.target).toBe('aws');
    expect(await resolve(outputs.clusterName as pulumi.Output<string>)).toBe('viaprogram-aws');
    await settled();
  });
});
