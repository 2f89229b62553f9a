import type { PolicyResource } from '@pulumi/policy';

// Reads what the replyx docker and aws targets actually declared (container env, ECS task
// definitions and services, the nginx config resource, the load balancer) into plain facts,
// so the policies judge the resources Pulumi is about to create, not only the stack file.

/** A resource as policies see it: the fields this module reads. */
export type ResourceView = Pick<PolicyResource, 'type' | 'props' | 'urn' | 'name'>;

/** The role a container plays, recognised by the env contract every target sets. */
export type Role = 'backend' | 'gateway' | 'nginx';

/** One declared container (docker container, or one container of an ECS task definition). */
export interface ContainerFact {
  readonly role: Role;
  readonly urn: string;
  readonly env: Readonly<Record<string, string>>;
  /** How many run: 1 per docker container; the ECS service's desired count on aws. */
  readonly count: number;
  /**
   * Seconds between the stop signal and SIGKILL when a deploy replaces it: docker's
   * destroyGraceSeconds (without it the provider force-removes), the ECS container's stopTimeout.
   */
  readonly stopGraceS?: number;
}

/** Everything the policies judge. */
export interface DeploymentFacts {
  /** Stack name from the URNs (`urn:pulumi:<stack>::<project>::...`). */
  readonly stack?: string;
  readonly containers: readonly ContainerFact[];
  /** Rendered nginx configs being deployed, with the resource that carries each. */
  readonly nginxConfigs: readonly { readonly urn: string; readonly text: string }[];
  /** ALB idle timeouts (aws). */
  readonly loadBalancers: readonly { readonly urn: string; readonly idleTimeoutS: number }[];
}

/** Reads the stack name out of a Pulumi URN. */
export function stackFromUrn(urn: string): string | undefined {
  const m = /^urn:pulumi:([^:]+)::/.exec(urn);
  return m?.[1];
}

function roleOf(env: Readonly<Record<string, string>>): Role | undefined {
  if (env.NGINX_CONF !== undefined) return 'nginx';
  if (env.SERVICE_MODE === 'websocket' || env.BROKER !== undefined) return 'gateway';
  if (env.BACKEND_WORKERS !== undefined || env.UVICORN_WORKERS !== undefined) return 'backend';
  return undefined;
}

function dockerEnv(props: Record<string, unknown>): Record<string, string> {
  const env: Record<string, string> = {};
  const list = Array.isArray(props.envs) ? props.envs : [];
  for (const entry of list) {
    if (typeof entry !== 'string') continue;
    const eq = entry.indexOf('=');
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

function ecsContainers(props: Record<string, unknown>): { env: Record<string, string>; stopTimeout?: number }[] {
  let defs: unknown = props.containerDefinitions;
  if (typeof defs === 'string') {
    try {
      defs = JSON.parse(defs) as unknown;
    } catch {
      return [];
    }
  }
  if (!Array.isArray(defs)) return [];
  return defs.map((d: unknown) => {
    const env: Record<string, string> = {};
    const list = (d as { environment?: unknown }).environment;
    for (const e of Array.isArray(list) ? list : []) {
      const { name, value } = e as { name?: unknown; value?: unknown };
      if (typeof name === 'string' && value !== undefined) env[name] = String(value);
    }
    const stopTimeout = (d as { stopTimeout?: unknown }).stopTimeout;
    return typeof stopTimeout === 'number' ? { env, stopTimeout } : { env };
  });
}

const isReplyxNginxConfig = (text: unknown): text is string => typeof text === 'string' && /replyx-topology-checksum:/.test(text);

/** Collects the facts from the resources of a preview or update. */
export function deploymentFacts(resources: readonly ResourceView[]): DeploymentFacts {
  const containers: ContainerFact[] = [];
  const nginxConfigs: { urn: string; text: string }[] = [];
  const loadBalancers: { urn: string; idleTimeoutS: number }[] = [];
  // ECS services name their task definition by ARN, unknown at preview: match on the role in the name instead.
  const desiredByRole = new Map<Role, number>();
  for (const r of resources) {
    if (r.type === 'aws:ecs/service:Service') {
      const label = `${String(r.props.name ?? '')} ${r.name}`;
      const role: Role | undefined = /gateway/.test(label) ? 'gateway' : /nginx/.test(label) ? 'nginx' : /backend/.test(label) ? 'backend' : undefined;
      if (role && typeof r.props.desiredCount === 'number') desiredByRole.set(role, r.props.desiredCount);
    }
  }
  for (const r of resources) {
    if (r.type === 'docker:index/container:Container') {
      const env = dockerEnv(r.props);
      const role = roleOf(env);
      const grace = r.props.destroyGraceSeconds;
      if (role) containers.push({ role, urn: r.urn, env, count: 1, ...(typeof grace === 'number' ? { stopGraceS: grace } : {}) });
    } else if (r.type === 'aws:ecs/taskDefinition:TaskDefinition') {
      for (const { env, stopTimeout } of ecsContainers(r.props)) {
        const role = roleOf(env);
        if (!role) continue;
        containers.push({ role, urn: r.urn, env, count: desiredByRole.get(role) ?? 1, ...(stopTimeout !== undefined ? { stopGraceS: stopTimeout } : {}) });
        if (role === 'nginx' && isReplyxNginxConfig(env.NGINX_CONF)) nginxConfigs.push({ urn: r.urn, text: env.NGINX_CONF });
      }
    } else if (r.type === 'aws:lb/loadBalancer:LoadBalancer' && typeof r.props.idleTimeout === 'number') {
      loadBalancers.push({ urn: r.urn, idleTimeoutS: r.props.idleTimeout });
    } else if (isReplyxNginxConfig(r.props.content)) {
      // The docker target's nginx config file resource (a dynamic resource holding the text).
      nginxConfigs.push({ urn: r.urn, text: r.props.content });
    }
  }
  const stack = resources.map((r) => stackFromUrn(r.urn)).find((s) => s !== undefined);
  return { ...(stack !== undefined ? { stack } : {}), containers, nginxConfigs, loadBalancers };
}
