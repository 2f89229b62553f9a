import type { Policies, PolicyResource, ReportViolation, StackValidationArgs, StackValidationPolicy } from '@pulumi/policy';
import { readChecksumFromConfig, readNginxConfigHeader } from '../infra/render/nginx.js';
import {
  albIdleTimeout,
  checkStaticArchitecture,
  declaredStopGraceMessage,
  desyncRisk,
  desyncRiskMessage,
  evaluateStaticRules,
  gatewaysNeedBroker,
  gatewaysWithoutBrokerMessage,
  heartbeatMessage,
  idleTimeoutsCutBy,
  ruleById,
  RULES,
  rulesReading,
  type Rule,
  type RuleId,
  type RuleResult,
} from '../infra/rules/index.js';
import { topologyChecksum, type Topology } from '../infra/topology/index.js';
import { deploymentFacts, type DeploymentFacts, type ResourceView } from './facts.js';

// The replyx CrossGuard policies. They apply the same pure rules as `npm run check` and the
// program's fail-fast, to two sources: the topology in the stack file (found from the stack
// name in the URNs) and the resources the targets declared (container env, nginx config text,
// ECS services, load balancer). The second catches a target that drifts from its topology.
// Ids, titles and fixes come from the rule table: each rule judged on declared resources is one
// policy named `replyx-<rule id>`.

/** How a policy finds the topology of a stack; undefined when the stack file is not there. */
export type TopologyLoader = (stack: string) => Topology | undefined;

/** The arguments of a stack validation that the policies use (a real StackValidationArgs fits). */
export type PolicyArgs = Pick<StackValidationArgs, 'notApplicable'> & { readonly resources: readonly ResourceView[] };

const CONFIG_RULES = new Set<RuleId>(rulesReading('nginx-config').map((r) => r.id));

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

/** One rule judged on the declared resources: why it does not apply, or what violates it. */
interface DeclaredCheck {
  /** Why these resources give the rule nothing to judge; undefined when they do. */
  readonly notApplicable?: (facts: DeploymentFacts) => string | undefined;
  /** Each violation: its message (the fix is added from the rule table) and the resource. */
  readonly judge: (facts: DeploymentFacts, topology: () => Topology) => { readonly message: string; readonly urn: string }[];
}

const gateways = (facts: DeploymentFacts) => facts.containers.filter((c) => c.role === 'gateway');
const backends = (facts: DeploymentFacts) => facts.containers.filter((c) => c.role === 'backend');
const declaredWorkers = (env: Readonly<Record<string, string>>) => env.BACKEND_WORKERS ?? env.UVICORN_WORKERS;

// The rules the table marks as judged against declared resources (nginx configs aside: they go
// through evaluateStaticRules in replyx-nginx-config), each reading the same values from them.
const DECLARED_CHECKS: Readonly<Partial<Record<RuleId, DeclaredCheck>>> = {
  'single-gateway-or-broker': {
    notApplicable: (facts) => (gateways(facts).length === 0 ? 'no gateway container' : undefined),
    judge: (facts) => {
      const processes = gateways(facts).reduce((n, c) => n + c.count, 0);
      return gateways(facts)
        .filter((g) => gatewaysNeedBroker(processes, g.env.BROKER))
        .map((g) => ({ message: gatewaysWithoutBrokerMessage(processes, `BROKER=${g.env.BROKER ?? '(unset)'}`), urn: g.urn }));
    },
  },
  'desync-risk': {
    judge: (facts) => {
      if (!facts.nginxConfigs.some((c) => readNginxConfigHeader(c.text).wsRoute === 'backend')) return [];
      return backends(facts).flatMap((b) => {
        const workers = Number(declaredWorkers(b.env) ?? '1');
        return desyncRisk('backend', workers) ? [{ message: desyncRiskMessage(workers), urn: b.urn }] : [];
      });
    },
  },
  'heartbeat-vs-timeouts': {
    notApplicable: (facts) => (facts.loadBalancers.length === 0 ? 'no load balancer' : undefined),
    judge: (facts) => {
      const heartbeatMs = Math.max(...gateways(facts).flatMap((c) => (c.env.HEARTBEAT_MS === undefined ? [] : [Number(c.env.HEARTBEAT_MS)])), 0);
      return facts.loadBalancers.flatMap((lb) => {
        const cut = idleTimeoutsCutBy(heartbeatMs, [albIdleTimeout(lb.idleTimeoutS)]);
        return cut.length === 0 ? [] : [{ message: heartbeatMessage(heartbeatMs, cut), urn: lb.urn }];
      });
    },
  },
  'stop-timeout-covers-drain': {
    notApplicable: (facts) => (gateways(facts).some((g) => g.env.DRAIN_WINDOW_MS !== undefined) ? undefined : 'no gateway container declares DRAIN_WINDOW_MS'),
    judge: (facts) =>
      gateways(facts).flatMap((g) => {
        if (g.env.DRAIN_WINDOW_MS === undefined) return [];
        const message = declaredStopGraceMessage(g.stopGraceS, Number(g.env.DRAIN_WINDOW_MS));
        return message === undefined ? [] : [{ message, urn: g.urn }];
      }),
  },
  'gateway-workers': {
    notApplicable: (facts) => (gateways(facts).length === 0 ? 'no gateway container' : undefined),
    judge: (facts) =>
      gateways(facts)
        .filter((g) => g.env.UVICORN_WORKERS !== undefined && g.env.UVICORN_WORKERS !== '1')
        .map((g) => ({ message: `gateway runs UVICORN_WORKERS=${g.env.UVICORN_WORKERS}: connections split across its workers desync`, urn: g.urn })),
  },
  'backend-workers': {
    notApplicable: (facts) => (backends(facts).length === 0 ? 'no backend container' : undefined),
    judge: (facts, topology) =>
      backends(facts)
        .filter((b) => declaredWorkers(b.env) !== String(topology().backend.workers))
        .map((b) => ({ message: `backend declares ${declaredWorkers(b.env) ?? 'no'} workers, topology says ${topology().backend.workers}`, urn: b.urn })),
  },
};

function declaredPolicy(rule: Rule, load: TopologyLoader): StackValidationPolicy {
  const check = DECLARED_CHECKS[rule.id];
  if (!check) throw new Error(`rule ${rule.id} is marked as judged on declared resources but the policy pack has no check for it`);
  return stackPolicy(`replyx-${rule.id}`, `${rule.title}, in the resources being deployed.`, rule.blocksDeploy ? 'mandatory' : 'advisory', (facts, args, report) => {
    const reason = check.notApplicable?.(facts);
    if (reason !== undefined) return args.notApplicable(reason);
    // The stack file is read only when needed: to judge, or to word a violation's fix.
    let topology: Topology | undefined;
    const topologyNow = () => (topology ??= topologyOf(args, facts, load));
    for (const v of check.judge(facts, topologyNow)) report(`${v.message} (fix: ${rule.fix({ topology: topologyNow() })})`, v.urn);
  });
}

/** Builds the replyx policies; `load` reads a stack's topology (the pack passes a stack-file reader). */
export function createPolicies(load: TopologyLoader): Policies {
  return [
    stackPolicy('replyx-topology-rules', 'The stack topology passes every deploy-blocking architecture rule (npm run check -- --static-only).', 'mandatory', (facts, args, report) => {
      const topology = topologyOf(args, facts, load);
      for (const r of checkStaticArchitecture(topology)) if (r.status === 'fail' && ruleById(r.id).blocksDeploy) report(line(r));
    }),
    stackPolicy('replyx-nginx-config', 'Every nginx config being deployed routes, upgrades, times out, blocks and logs as the architecture requires.', 'mandatory', (facts, args, report) => {
      if (facts.nginxConfigs.length === 0) return args.notApplicable('no replyx nginx config among the resources');
      const topology = topologyOf(args, facts, load);
      for (const { urn, text } of facts.nginxConfigs) {
        const results = evaluateStaticRules({ topology, nginxConfig: text, configChecksum: readChecksumFromConfig(text), expectedChecksum: topologyChecksum(topology) });
        for (const r of results) if (r.status === 'fail' && CONFIG_RULES.has(r.id) && ruleById(r.id).blocksDeploy) report(line(r), urn);
      }
    }),
    ...RULES.filter((r) => r.against.includes('declared') && r.reads !== 'nginx-config').map((r) => declaredPolicy(r, load)),
  ];
}
