import { ReplyxError } from '../errors.js';
import type { ServiceName } from './schema.js';

// One name per service for users: the topology's key. Older names stay accepted as aliases, so
// `restart ws-gateway` (the seed's and the container's name) keeps working wherever a command
// takes a service. Every parser of a service name goes through here.

/** The stack's services in start order (dependencies first). */
export const SERVICE_NAMES = ['postgres', 'redis', 'backend', 'gateway', 'nginx'] as const satisfies readonly ServiceName[];

/** Other names users may type for a service. */
export const SERVICE_ALIASES = { 'ws-gateway': 'gateway' } as const satisfies Readonly<Record<string, ServiceName>>;
/** A name users may type for a service besides its own. */
export type ServiceAlias = keyof typeof SERVICE_ALIASES;

/** The canonical name of `text` (a service name or alias), or undefined when it names none. */
export function canonicalServiceName(text: string): ServiceName | undefined {
  if ((SERVICE_NAMES as readonly string[]).includes(text)) return text as ServiceName;
  return (SERVICE_ALIASES as Readonly<Record<string, ServiceName>>)[text];
}

/** Like {@link canonicalServiceName}, restricted to `allowed`; throws RPX_USAGE naming the choices. */
export function parseServiceName<S extends ServiceName>(text: string, allowed: readonly S[], fix: string): S {
  const name = canonicalServiceName(text);
  if (name === undefined || !(allowed as readonly string[]).includes(name)) {
    throw new ReplyxError('RPX_USAGE', `unknown service "${text}"; use one of: ${allowed.join(', ')}`, fix);
  }
  return name as S;
}

/**
 * The ports of the gateway's replicas on the local target: replica i (1-based) listens on
 * `gateway.port + i - 1`, so the plan, the nginx upstream and the check rules derive them alike.
 */
export function gatewayReplicaPorts(gateway: { readonly port: number; readonly replicas: number }): number[] {
  return Array.from({ length: gateway.replicas }, (_, i) => gateway.port + i);
}

/** The process name of gateway replica `index` (1-based): `gateway` when it is the only one, else `gateway-<index>`. */
export function gatewayReplicaName(index: number, replicas: number): 'gateway' | `gateway-${number}` {
  return replicas === 1 ? 'gateway' : `gateway-${index}`;
}

/** Whether a process name is one of the gateway's (`gateway`, `gateway-2`). */
export function isGatewayProcess(name: string): boolean {
  return name === 'gateway' || /^gateway-\d+$/.test(name);
}
