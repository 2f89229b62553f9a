import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import type { Topology } from '../../topology/index.js';

/** Port ElastiCache Redis listens on (the managed default; the topology's redis.port is for local/docker). */
export const AWS_REDIS_PORT = 6379;
/** Port RDS Postgres listens on (the managed default; the topology's postgres.port is for local/docker). */
export const AWS_POSTGRES_PORT = 5432;

/** The security groups of the stack, one per tier. */
export const SECURITY_GROUPS = ['alb', 'nginx', 'backend', 'gateway', 'redis', 'postgres'] as const;
export type SecurityGroupName = (typeof SECURITY_GROUPS)[number];

/** One end of a flow: a security group of the stack, or an address range outside it. */
export type FlowPeer = { readonly group: SecurityGroupName } | { readonly cidrIpv4: string } | { readonly cidrIpv6: string };

/** One allowed TCP flow: from `source` to `destination` on `port`, and why it exists. */
export interface AllowedFlow {
  readonly source: FlowPeer;
  readonly destination: FlowPeer;
  readonly port: number;
  readonly reason: string;
}

/** A rule to create: ingress on the destination group or egress on the source group. */
export interface SecurityRulePlan {
  readonly direction: 'ingress' | 'egress';
  /** The group the rule belongs to. */
  readonly group: SecurityGroupName;
  /** The other end: a stack group or a CIDR. */
  readonly peer: FlowPeer;
  readonly port: number;
  readonly description: string;
}

const internet: readonly FlowPeer[] = [{ cidrIpv4: '0.0.0.0/0' }, { cidrIpv6: '::/0' }];

/**
 * The whole traffic policy of the stack as data: every flow not listed here is denied.
 * Only the load balancer takes traffic from the internet (80, and 443 when HTTPS is on); nginx
 * only from the load balancer; backend and gateway only from nginx; Redis and Postgres only
 * from backend and gateway. Tasks may also reach AWS APIs on 443 (ECR, CloudWatch Logs,
 * Secrets Manager) through the NAT gateways.
 */
export function planSecurityGroups(topology: Topology, options: { readonly https: boolean }): readonly AllowedFlow[] {
  const publicPorts = options.https ? [80, 443] : [80];
  const flows: AllowedFlow[] = [];
  for (const port of publicPorts) {
    for (const source of internet) {
      flows.push({ source, destination: { group: 'alb' }, port, reason: port === 443 ? 'HTTPS from clients' : options.https ? 'HTTP from clients (redirected to HTTPS)' : 'HTTP from clients' });
    }
  }
  flows.push(
    { source: { group: 'alb' }, destination: { group: 'nginx' }, port: topology.nginx.port, reason: 'load balancer to nginx (requests and /health checks)' },
    { source: { group: 'nginx' }, destination: { group: 'backend' }, port: topology.backend.port, reason: 'nginx to backend (/api/, and /ws/ when wsRoute=backend)' },
    { source: { group: 'nginx' }, destination: { group: 'gateway' }, port: topology.gateway.port, reason: 'nginx to ws-gateway (/ws/)' },
  );
  for (const app of ['backend', 'gateway'] as const) {
    flows.push(
      { source: { group: app }, destination: { group: 'redis' }, port: AWS_REDIS_PORT, reason: `${app} to Redis (events, history)` },
      { source: { group: app }, destination: { group: 'postgres' }, port: AWS_POSTGRES_PORT, reason: `${app} to Postgres` },
    );
  }
  for (const task of ['nginx', 'backend', 'gateway'] as const) {
    // Fargate pulls images, ships logs and fetches secrets through the task's own ENI, so the
    // task group must allow HTTPS out; nothing else leaves the VPC.
    flows.push({ source: { group: task }, destination: { cidrIpv4: '0.0.0.0/0' }, port: 443, reason: `${task} task to AWS APIs (ECR, CloudWatch Logs, Secrets Manager)` });
  }
  return flows;
}

/**
 * Turns flows into the rules that enforce them: an ingress rule on the destination group and
 * an egress rule on the source group, whenever that end is one of ours.
 */
export function securityRulesFor(flows: readonly AllowedFlow[]): readonly SecurityRulePlan[] {
  const rules: SecurityRulePlan[] = [];
  for (const flow of flows) {
    if ('group' in flow.destination) rules.push({ direction: 'ingress', group: flow.destination.group, peer: flow.source, port: flow.port, description: flow.reason });
    if ('group' in flow.source) rules.push({ direction: 'egress', group: flow.source.group, peer: flow.destination, port: flow.port, description: flow.reason });
  }
  return rules;
}

function peerKey(peer: FlowPeer): string {
  if ('group' in peer) return peer.group;
  if ('cidrIpv4' in peer) return peer.cidrIpv4 === '0.0.0.0/0' ? 'any4' : peer.cidrIpv4.replace(/[./]/g, '-');
  return peer.cidrIpv6 === '::/0' ? 'any6' : peer.cidrIpv6.replace(/[:/]/g, '-');
}

/** A stable resource name for a rule, so that reordering flows never replaces rules. */
export function securityRuleName(prefix: string, rule: SecurityRulePlan): string {
  return `${prefix}-${rule.group}-${rule.direction === 'ingress' ? 'in' : 'out'}-${peerKey(rule.peer)}-${rule.port}`;
}

/** Arguments of the SecurityGroups component. */
export interface SecurityGroupsArgs {
  readonly vpcId: pulumi.Input<string>;
  readonly flows: readonly AllowedFlow[];
  readonly tags: Readonly<Record<string, string>>;
}

/**
 * `replyx:aws:SecurityGroups`: one empty group per tier plus one standalone rule per planned
 * flow direction. The provider removes AWS's default allow-all egress from new groups, so
 * the planned rules are the complete policy in both directions.
 */
export class SecurityGroups extends pulumi.ComponentResource {
  readonly ids: Record<SecurityGroupName, pulumi.Output<string>>;

  /** Creates the groups and rules for `args.flows`. */
  constructor(name: string, args: SecurityGroupsArgs, opts?: pulumi.ComponentResourceOptions) {
    super('replyx:aws:SecurityGroups', name, {}, opts);
    const groups = Object.fromEntries(
      SECURITY_GROUPS.map((g) => [
        g,
        new aws.ec2.SecurityGroup(`${name}-${g}`, { vpcId: args.vpcId, description: `replyx ${g}`, revokeRulesOnDelete: true, tags: { ...args.tags, Name: `${name}-${g}` } }, { parent: this }),
      ]),
    ) as Record<SecurityGroupName, aws.ec2.SecurityGroup>;
    for (const rule of securityRulesFor(args.flows)) {
      const common = {
        securityGroupId: groups[rule.group].id,
        ipProtocol: 'tcp',
        fromPort: rule.port,
        toPort: rule.port,
        description: rule.description,
        ...('group' in rule.peer ? { referencedSecurityGroupId: groups[rule.peer.group].id } : 'cidrIpv4' in rule.peer ? { cidrIpv4: rule.peer.cidrIpv4 } : { cidrIpv6: rule.peer.cidrIpv6 }),
      };
      const ruleName = securityRuleName(name, rule);
      if (rule.direction === 'ingress') new aws.vpc.SecurityGroupIngressRule(ruleName, common, { parent: this });
      else new aws.vpc.SecurityGroupEgressRule(ruleName, common, { parent: this });
    }
    this.ids = Object.fromEntries(SECURITY_GROUPS.map((g) => [g, groups[g].id])) as Record<SecurityGroupName, pulumi.Output<string>>;
    this.registerOutputs({ ids: this.ids });
  }
}
