import { ReplyxError } from '../errors.js';
import { readChecksumFromConfig, renderNginxConfig } from '../render/nginx.js';
import { topologyChecksum, type Topology } from '../topology/index.js';
import { ruleById, type FixContext } from './catalog.js';
import type { RuleResult } from './result.js';
import { evaluateStaticRules } from './static-rules.js';

/** Renders the topology's nginx config and evaluates every static rule against it. */
export function checkStaticArchitecture(topology: Topology, nginxConfig: string = renderNginxConfig(topology, topology.target), fixContext: Omit<FixContext, 'topology'> = {}): RuleResult[] {
  return evaluateStaticRules(
    {
      topology,
      nginxConfig,
      configChecksum: readChecksumFromConfig(nginxConfig),
      expectedChecksum: topologyChecksum(topology),
    },
    fixContext,
  );
}

/**
 * Fail-fast for the Pulumi program: throws RPX_ARCHITECTURE listing every failed rule that
 * blocks a deploy, before any resource exists. Returns the rest (warnings, and failures of
 * rules an operator may choose on purpose, like the rollback's desync risk) for the caller to log.
 */
export function assertArchitecture(topology: Topology, options: { nginxConfig?: string } = {}): RuleResult[] {
  const results = checkStaticArchitecture(topology, options.nginxConfig);
  const failed = results.filter((r) => r.status === 'fail' && ruleById(r.id).blocksDeploy);
  if (failed.length > 0) {
    throw new ReplyxError(
      'RPX_ARCHITECTURE',
      `${failed.length} architecture rule(s) failed for stack topology "${topology.name}": ${failed.map((f) => f.id).join(', ')}`,
      'fix each listed rule (npm run check -- --static-only shows the same table)',
      { details: failed.map((f) => `${f.id}: ${f.detail} — ${f.fix}`) },
    );
  }
  return results.filter((r) => r.status === 'warn' || r.status === 'fail');
}
