import { describe, expect, it } from 'vitest';
import type { StackValidationPolicy } from '@pulumi/policy';
import { renderNginxConfig } from '../infra/render/nginx.js';
import { ruleById, RULES } from '../infra/rules/index.js';
import { validateTopology, type Topology, type TopologyInput } from '../infra/topology/index.js';
import { deploymentFacts, stackFromUrn, type ResourceView } from './facts.js';
import { createPolicies } from './policies.js';
import { loadStackTopology } from './stack-topology.js';

const topo = (input: TopologyInput = {}) => validateTopology({ target: 'docker', ...input }, 'test').topology;
const urn = (type: string, name: string) => `urn:pulumi:dev::replyx::${type}::${name}`;

function dockerResources(t: Topology, patch: { nginx?: string; backendEnv?: string[]; gatewayEnv?: string[]; gateways?: number } = {}): ResourceView[] {
  const container = (name: string, envs: string[]): ResourceView => ({ type: 'docker:index/container:Container', name, urn: urn('docker:index/container:Container', name), props: { name, envs } });
  const gateways = Array.from({ length: patch.gateways ?? 1 }, (_, i) =>
    container(`replyx-ws-gateway-${i}`, patch.gatewayEnv ?? ['SERVICE_MODE=websocket', `BROKER=${t.gateway.broker}`, 'UVICORN_WORKERS=1', `HEARTBEAT_MS=${t.gateway.heartbeatMs}`]),
  );
  return [
    container('replyx-backend', patch.backendEnv ?? [`BACKEND_WORKERS=${t.backend.workers}`, `UVICORN_WORKERS=${t.backend.workers}`]),
    ...gateways,
    container('replyx-nginx', []),
    { type: 'pulumi-nodejs:dynamic:Resource', name: 'replyx-nginx-config', urn: urn('pulumi-nodejs:dynamic:Resource', 'replyx-nginx-config'), props: { content: patch.nginx ?? renderNginxConfig(t, 'docker') } },
  ];
}

interface Outcome {
  violations: { message: string; urn?: string }[];
  notApplicable?: string;
}

async function run(policy: StackValidationPolicy, resources: ResourceView[]): Promise<Outcome> {
  const out: Outcome = { violations: [] };
  const notApplicable = (reason?: string): never => {
    out.notApplicable = reason ?? '';
    throw new Error('not applicable');
  };
  try {
    await policy.validateStack({ resources, notApplicable } as never, (message, u) => out.violations.push({ message, ...(u ? { urn: u } : {}) }));
  } catch (err) {
    if (out.notApplicable === undefined) throw err;
  }
  return out;
}

function policies(t: Topology | undefined) {
  const list = createPolicies(() => t) as StackValidationPolicy[];
  return (name: string) => list.find((p) => p.name === name)!;
}

describe('replyx policy pack', () => {
  const t = topo();
  const p = policies(t);

  it('passes a default docker deployment', async () => {
    for (const policy of createPolicies(() => t) as StackValidationPolicy[]) {
      const out = await run(policy, dockerResources(t));
      expect(out.violations, policy.name).toEqual([]);
    }
  });

  it('names each resource policy after its rule, with enforcement and fix from the rule table', async () => {
    const list = createPolicies(() => t) as StackValidationPolicy[];
    const declared = RULES.filter((r) => r.against.includes('declared') && r.reads !== 'nginx-config');
    expect(list.map((x) => x.name)).toEqual(['replyx-topology-rules', 'replyx-nginx-config', ...declared.map((r) => `replyx-${r.id}`)]);
    expect(declared.map((r) => r.id).sort()).toEqual(['backend-workers', 'desync-risk', 'gateway-workers', 'heartbeat-vs-timeouts', 'single-gateway-or-broker', 'stop-timeout-covers-drain']);
    for (const rule of declared) {
      const policy = list.find((x) => x.name === `replyx-${rule.id}`)!;
      expect(policy.enforcementLevel, rule.id).toBe(rule.blocksDeploy ? 'mandatory' : 'advisory');
      expect(policy.description).toContain(rule.title);
    }
    const out = await run(p('replyx-backend-workers'), dockerResources(t, { backendEnv: ['BACKEND_WORKERS=2'] }));
    expect(out.violations[0]!.message).toContain(`(fix: ${ruleById('backend-workers').fix({ topology: t })})`);
  });

  it('replyx-topology-rules: reports a topology failing a blocking rule', async () => {
    const bad = structuredClone(t) as unknown as { gateway: { replicas: number; broker: string } };
    bad.gateway.replicas = 2;
    bad.gateway.broker = 'memory';
    const out = await run(policies(bad as unknown as Topology)('replyx-topology-rules'), dockerResources(t));
    expect(out.violations.map((v) => v.message.split(':')[0])).toEqual(['single-gateway-or-broker']);
  });

  it('replyx-topology-rules: not applicable without a stack file', async () => {
    const out = await run(policies(undefined)('replyx-topology-rules'), dockerResources(t));
    expect(out.notApplicable).toMatch(/Pulumi\.dev\.yaml/);
  });

  it('replyx-nginx-config: a deployed config that leaks /ws/ tokens to the log and drops buffering off', async () => {
    const text = renderNginxConfig(t, 'docker').replace('proxy_buffering off;', '').replace(/(log_format replyx_ws escape=json '[^']*)\$uri/, '$1$request_uri');
    const out = await run(p('replyx-nginx-config'), dockerResources(t, { nginx: text }));
    expect(out.violations.map((v) => v.message.split(':')[0]).sort()).toEqual(['ws-buffering-off', 'ws-log-no-query']);
    expect(out.violations[0]!.urn).toMatch(/replyx-nginx-config$/);
  });

  it('replyx-nginx-config: a config rendered from another topology fails the checksum', async () => {
    const out = await run(p('replyx-nginx-config'), dockerResources(t, { nginx: renderNginxConfig(topo({ nginx: { proxyReadTimeoutS: 300 } }), 'docker') }));
    expect(out.violations.map((v) => v.message.split(':')[0])).toEqual(['config-checksum']);
  });

  it('replyx-single-gateway-or-broker and replyx-gateway-workers: two gateways with the memory broker, or a multi-worker gateway', async () => {
    const two = await run(p('replyx-single-gateway-or-broker'), dockerResources(t, { gateways: 2, gatewayEnv: ['SERVICE_MODE=websocket', 'BROKER=memory'] }));
    expect(two.violations).toHaveLength(2);
    expect(two.violations[0]!.message).toMatch(/2 gateway processes but BROKER=memory/);
    const workers = await run(p('replyx-gateway-workers'), dockerResources(t, { gatewayEnv: ['SERVICE_MODE=websocket', 'BROKER=redis', 'UVICORN_WORKERS=4'] }));
    expect(workers.violations[0]!.message).toMatch(/UVICORN_WORKERS=4/);
    const ok = await run(p('replyx-single-gateway-or-broker'), dockerResources(t, { gateways: 3, gatewayEnv: ['SERVICE_MODE=websocket', 'BROKER=redis'] }));
    expect(ok.violations).toEqual([]);
  });

  it('replyx-desync-risk: /ws/ to a 4-worker backend (advisory)', async () => {
    const rb = topo({ wsRoute: 'backend' });
    const policy = policies(rb)('replyx-desync-risk');
    expect(policy.enforcementLevel).toBe('advisory');
    const out = await run(policy, dockerResources(rb));
    expect(out.violations[0]!.message).toMatch(/desync risk.*4 workers/);
    const one = topo({ wsRoute: 'backend', backend: { workers: 1 } });
    expect((await run(policies(one)('replyx-desync-risk'), dockerResources(one))).violations).toEqual([]);
  });

  it('replyx-backend-workers: a container with another worker count than the topology', async () => {
    const out = await run(p('replyx-backend-workers'), dockerResources(t, { backendEnv: ['BACKEND_WORKERS=2'] }));
    expect(out.violations[0]!.message).toMatch(/declares 2 workers, topology says 4/);
  });

  it('reads ECS task definitions, services and the ALB (aws)', async () => {
    const aws = topo({ target: 'aws', aws: { albIdleTimeoutS: 30 } });
    const resources: ResourceView[] = [
      { type: 'aws:ecs/taskDefinition:TaskDefinition', name: 'gw', urn: urn('aws:ecs/taskDefinition:TaskDefinition', 'gw'), props: { containerDefinitions: JSON.stringify([{ name: 'ws-gateway', environment: [{ name: 'SERVICE_MODE', value: 'websocket' }, { name: 'BROKER', value: 'memory' }, { name: 'HEARTBEAT_MS', value: '25000' }] }]) } },
      { type: 'aws:ecs/taskDefinition:TaskDefinition', name: 'ng', urn: urn('aws:ecs/taskDefinition:TaskDefinition', 'ng'), props: { containerDefinitions: JSON.stringify([{ name: 'nginx', environment: [{ name: 'NGINX_CONF', value: renderNginxConfig(aws, 'aws') }] }]) } },
      { type: 'aws:ecs/service:Service', name: 'replyx-ws-gateway', urn: urn('aws:ecs/service:Service', 'gw'), props: { name: 'replyx-ws-gateway', desiredCount: 2 } },
      { type: 'aws:lb/loadBalancer:LoadBalancer', name: 'alb', urn: urn('aws:lb/loadBalancer:LoadBalancer', 'alb'), props: { idleTimeout: 20 } },
    ];
    const facts = deploymentFacts(resources);
    expect(facts.containers.map((c) => [c.role, c.count])).toEqual([['gateway', 2], ['nginx', 1]]);
    expect(facts.nginxConfigs).toHaveLength(1);
    const pa = policies(aws);
    expect((await run(pa('replyx-single-gateway-or-broker'), resources)).violations[0]!.message).toMatch(/2 gateway processes/);
    expect((await run(pa('replyx-heartbeat-vs-timeouts'), resources)).violations[0]!.message).toMatch(/idle timeout 20 s/);
    expect((await run(pa('replyx-nginx-config'), resources)).violations).toEqual([]);
  });

  it('replyx-stop-timeout-covers-drain: a gateway killed before its drain ends, on docker and on ECS', async () => {
    const gateway = (props: Record<string, unknown>): ResourceView => ({
      type: 'docker:index/container:Container',
      name: 'replyx-ws-gateway',
      urn: urn('docker:index/container:Container', 'replyx-ws-gateway'),
      props: { name: 'replyx-ws-gateway', envs: ['SERVICE_MODE=websocket', 'BROKER=redis', 'DRAIN_WINDOW_MS=20000'], ...props },
    });
    const policy = p('replyx-stop-timeout-covers-drain');
    expect(policy.enforcementLevel).toBe('mandatory');
    expect((await run(policy, [gateway({ destroyGraceSeconds: 30 })])).violations).toEqual([]);
    expect((await run(policy, [gateway({ destroyGraceSeconds: 20 })])).violations[0]!.message).toMatch(/gets 20 s before SIGKILL but its 20000 ms drain needs 30 s/);
    // Without destroyGraceSeconds the docker provider force-removes the container on replacement.
    expect((await run(policy, [gateway({})])).violations[0]!.message).toMatch(/declares no stop grace/);
    const ecs: ResourceView = {
      type: 'aws:ecs/taskDefinition:TaskDefinition',
      name: 'gw',
      urn: urn('aws:ecs/taskDefinition:TaskDefinition', 'gw'),
      props: { containerDefinitions: JSON.stringify([{ name: 'ws-gateway', stopTimeout: 15, environment: [{ name: 'SERVICE_MODE', value: 'websocket' }, { name: 'DRAIN_WINDOW_MS', value: '20000' }] }]) },
    };
    expect((await run(policy, [ecs])).violations[0]!.urn).toMatch(/::gw$/);
    expect((await run(policy, dockerResources(t))).notApplicable).toMatch(/DRAIN_WINDOW_MS/);
  });

  it('replyx-nginx-config: an aws config whose keepalive_timeout is below the load balancer idle timeout', async () => {
    const aws = topo({ target: 'aws', aws: { albIdleTimeoutS: 300 } });
    const text = renderNginxConfig(aws, 'aws').replace('keepalive_timeout 305s;', 'keepalive_timeout 65s;');
    const resources: ResourceView[] = [
      { type: 'aws:ecs/taskDefinition:TaskDefinition', name: 'ng', urn: urn('aws:ecs/taskDefinition:TaskDefinition', 'ng'), props: { containerDefinitions: JSON.stringify([{ name: 'nginx', environment: [{ name: 'NGINX_CONF', value: text }] }]) } },
    ];
    const out = await run(policies(aws)('replyx-nginx-config'), resources);
    expect(out.violations.map((v) => v.message.split(':')[0])).toEqual(['keepalive-above-alb-idle']);
  });

  it('finds the stack from URNs and loads the project stack file', () => {
    expect(stackFromUrn('urn:pulumi:dev::replyx::docker:index/container:Container::x')).toBe('dev');
    expect(loadStackTopology('dev')?.target).toBe('docker');
    expect(loadStackTopology('no-such-stack')).toBeUndefined();
  });
});
