import type { Policies, PolicyResource, ReportViolation, StackValidationArgs, StackValidationPolicy } from '@pulumi/policy';
import { readChecksumFromConfig, readNginxConfigHeader } from '../infra/render/nginx.js';
import { checkStaticArchitecture, evaluateStaticRules, STATIC_RULES, type RuleResult } from '../infra/rules/index.js';
import { topologyChecksum, type Topology } from '../infra/topology/index.js';
import { deploymentFacts, type DeploymentFacts, type ResourceView } from './facts.js';

// The replyx CrossGuard policies. They apply the same pure rules as `npm run check` and the
// program's fail-fast, to two sources: the topology in the stack file (found from the stack
// name in the URNs) and the resources the targets declared (container env, nginx config text,
// ECS services, load balancer). The second catches a target that drifts from its topology.

/** How a policy finds the topology of a stack; undefined when the stack file is not there. */
export type TopologyLoader = (stack: string) => Topology | undefined;

/** The arguments of a stack validation that the policies use (a real StackValidationArgs fits). */
export type PolicyArgs = Pick<StackValidationArgs, 'notApplicable'> & { readonly resources: readonly ResourceView[] };

const BLOCKING = new Set(STATIC_RULES.filter((r) => r.blocksDeploy).map((r) => r.id));
const CONFIG_RULES = new Set(STATIC_RULES.slice(3).map((r) => r.id));

const line = (r: RuleResult) => `${r.id}: ${r.detail} (fix: ${r.fix})`;

function topologyOf(args: PolicyArgs, facts: DeploymentFacts, load: TopologyLoader): Topology {
  if (facts.stack === undefined) return args.notApplicable('no resources, so no stack name');
  const topology = load(facts.stack);
  if (!topology) return args.notApplicable(`no Pulumi.${facts.stack}.yaml next to the policy pack's project`);
  return topology;
}

function stackPolicy(
  name: string,
  description: string,
  enforcementLevel: 'mandatory' | 'advisory',
  validate: (facts: DeploymentFacts, args: PolicyArgs, report: ReportViolation) => void,
): StackValidationPolicy {
  return {
    name,
    description,
    enforcementLevel,
    validateStack: (args, report) => validate(deploymentFacts(args.resources as readonly PolicyResource[]), args, report),
  };
}

/** Builds the replyx policies; `load` reads a stack's topology (the pack passes a stack-file reader). */
export function createPolicies(load: TopologyLoader): Policies {
  return [
    stackPolicy('replyx-topology-rules', 'The stack topology passes every deploy-blocking architecture rule (npm run check -- --static-only).', 'mandatory', (facts, args, report) => {
      const topology = topologyOf(args, facts, load);
      for (const r of checkStaticArchitecture(topology)) if (r.status === 'fail' && BLOCKING.has(r.id)) report(line(r));
    }),
    stackPolicy('replyx-nginx-config', 'Every nginx config being deployed routes, upgrades, times out, blocks and logs as the architecture requires.', 'mandatory', (facts, args, report) => {
      if (facts.nginxConfigs.length === 0) return args.notApplicable('no replyx nginx config among the resources');
      const topology = topologyOf(args, facts, load);
      for (const { urn, text } of facts.nginxConfigs) {
        const results = evaluateStaticRules({ topology, nginxConfig: text, configChecksum: readChecksumFromConfig(text), expectedChecksum: topologyChecksum(topology) });
        for (const r of results) if (r.status === 'fail' && CONFIG_RULES.has(r.id) && BLOCKING.has(r.id)) report(line(r), urn);
      }
    }),
    stackPolicy('replyx-gateway-single-or-broker', 'More than one gateway process only with BROKER=redis; each gateway process runs one worker.', 'mandatory', (facts, args, report) => {
      const gateways = facts.containers.filter((c) => c.role === 'gateway');
      if (gateways.length === 0) return args.notApplicable('no gateway container');
      const processes = gateways.reduce((n, c) => n + c.count, 0);
      for (const g of gateways) {
        if (processes > 1 && g.env.BROKER !== 'redis') report(`${processes} gateway processes but BROKER=${g.env.BROKER ?? '(unset)'}: events published to one never reach clients of another (fix: gateway.broker: redis)`, g.urn);
        if (g.env.UVICORN_WORKERS !== undefined && g.env.UVICORN_WORKERS !== '1') report(`gateway runs UVICORN_WORKERS=${g.env.UVICORN_WORKERS}: connections split across workers desync (fix: one worker per gateway process, scale with gateway.replicas)`, g.urn);
      }
    }),
    stackPolicy('replyx-desync-risk', '/ws/ served by a multi-worker backend (the pre-migration desync); allowed during a rollback, so advisory.', 'advisory', (facts, _args, report) => {
      const routes = facts.nginxConfigs.map((c) => readNginxConfigHeader(c.text).wsRoute);
      if (!routes.includes('backend')) return;
      for (const b of facts.containers.filter((c) => c.role === 'backend')) {
        const workers = Number(b.env.BACKEND_WORKERS ?? b.env.UVICORN_WORKERS ?? '1');
        if (workers > 1) report(`desync risk: /ws/ is routed to the backend, which runs ${workers} workers (fix: npm run rollback -- --backend-workers 1, or --ws-to gateway)`, b.urn);
      }
    }),
    stackPolicy('replyx-backend-workers-match', 'The backend containers run the worker count of the stack topology.', 'mandatory', (facts, args, report) => {
      const backends = facts.containers.filter((c) => c.role === 'backend');
      if (backends.length === 0) return args.notApplicable('no backend container');
      const topology = topologyOf(args, facts, load);
      for (const b of backends) {
        const workers = b.env.BACKEND_WORKERS ?? b.env.UVICORN_WORKERS;
        if (workers !== String(topology.backend.workers)) report(`backend declares ${workers ?? 'no'} workers, topology says ${topology.backend.workers} (fix: the target must pass backend.workers as BACKEND_WORKERS)`, b.urn);
      }
    }),
    stackPolicy('replyx-heartbeat-below-idle-timeouts', 'The gateway heartbeat is shorter than every load balancer idle timeout, so idle WebSockets are not cut.', 'mandatory', (facts, args, report) => {
      if (facts.loadBalancers.length === 0) return args.notApplicable('no load balancer');
      const heartbeats = facts.containers.filter((c) => c.role === 'gateway' && c.env.HEARTBEAT_MS !== undefined).map((c) => Number(c.env.HEARTBEAT_MS));
      const heartbeatMs = Math.max(...heartbeats, 0);
      for (const lb of facts.loadBalancers) {
        if (heartbeatMs >= lb.idleTimeoutS * 1000) report(`load balancer idle timeout ${lb.idleTimeoutS} s is not above the gateway heartbeat ${heartbeatMs} ms (fix: raise aws.albIdleTimeoutS)`, lb.urn);
      }
    }),
  ];
}
