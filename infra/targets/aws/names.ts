import { createHash } from 'node:crypto';

/** Characters Pulumi appends to an auto-named resource: a dash and seven random ones. */
export const AUTONAME_SUFFIX_LENGTH = 8;

/**
 * A logical resource name whose auto-generated physical name fits `limit` characters (ALB and
 * target group names: 32, ElastiCache replication group ids: 40). Pulumi refuses, at `up`
 * time, a name that cannot take its random suffix; a long `replyx:name` is therefore shortened
 * and tagged with a hash of the full name, so two long names that share a prefix stay distinct.
 */
export function fittedName(base: string, suffix: string, limit: number): string {
  const name = `${base}-${suffix}`;
  if (name.length + AUTONAME_SUFFIX_LENGTH <= limit) return name;
  const hash = createHash('sha256').update(base).digest('hex').slice(0, 4);
  const room = limit - AUTONAME_SUFFIX_LENGTH - suffix.length - hash.length - 2;
  return `${base.slice(0, Math.max(1, room)).replace(/-+$/, '')}-${hash}-${suffix}`;
}

/** Name limits of the AWS resources this target auto-names and that have short limits. */
export const NAME_LIMITS = { loadBalancer: 32, targetGroup: 32, replicationGroup: 40 } as const;
