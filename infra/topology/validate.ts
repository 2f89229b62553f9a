import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { ReplyxError } from '../errors.js';
import { rulesReading, validationSeverity, type RuleId } from '../rules/catalog.js';
import { TOPOLOGY_FINDINGS } from '../rules/topology-rules.js';
import { RENAMED_TOPOLOGY_KEYS, topologySchema, type Topology } from './schema.js';

/** One thing wrong (or risky) in a topology, named by its path with a fix. */
export interface TopologyIssue {
  readonly path: string;
  readonly message: string;
  readonly fix: string;
  readonly severity: 'error' | 'warning';
  /** The rule-table id of a cross-field rule, e.g. `desync-risk` (the same id `npm run check` prints). */
  readonly rule?: RuleId;
}

/** The result of a successful validation: the frozen topology and any warnings. */
export interface ValidatedTopology {
  readonly topology: Topology;
  readonly warnings: readonly TopologyIssue[];
}

/** Thrown when a topology has errors; `issues` lists every one of them. */
export class TopologyError extends ReplyxError {
  /** Builds the error from all the issues found, with `source` naming where the input came from. */
  constructor(
    readonly issues: readonly TopologyIssue[],
    source: string,
  ) {
    super(
      'RPX_TOPOLOGY_INVALID',
      `${source}: ${issues.length} problem${issues.length === 1 ? '' : 's'} in the stack topology`,
      'fix each path listed below in the stack file and run again',
      { details: issues.map((i) => `${i.path}: ${i.message} (fix: ${i.fix})`) },
    );
  }
}

type RawTopology = z.output<typeof topologySchema>;

const withArticle = (noun: string) => `${/^[aeiou]/.test(noun) ? 'an' : 'a'} ${noun}`;

function fixForZodIssue(path: string, issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'too_small':
      return `set ${path} to ${String(issue.minimum)} or more`;
    case 'too_big':
      return `set ${path} to ${String(issue.maximum)} or less`;
    case 'invalid_value':
      return `use one of: ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'unrecognized_keys':
      return `remove or rename ${issue.keys.map((k) => (path ? `${path}.${k}` : k)).join(', ')}; see the configuration reference in README.md`;
    case 'invalid_type':
      return `set ${path || 'the topology'} to ${withArticle(issue.expected === 'int' ? 'integer' : issue.expected)}`;
    case 'invalid_format':
      return `correct the format of ${path}`;
    default:
      return `correct ${path || 'the topology'}; see the configuration reference in README.md`;
  }
}

function messageForZodIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'too_small':
      return `must be >= ${String(issue.minimum)}`;
    case 'too_big':
      return `must be <= ${String(issue.maximum)}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}`;
    case 'unrecognized_keys':
      return `unknown key${issue.keys.length === 1 ? '' : 's'} ${issue.keys.join(', ')}`;
    case 'invalid_type':
      return `must be ${withArticle(issue.expected === 'int' ? 'integer' : issue.expected)}`;
    default:
      return issue.message;
  }
}

/**
 * Cross-field rules: what a single field cannot say on its own. They are the rules of the rule
 * table that read the topology (infra/rules/catalog.ts), with the same predicates the check and
 * the policy pack use; a rule that blocks a deploy is an error here, the others are warnings.
 */
function crossFieldIssues(t: RawTopology): TopologyIssue[] {
  return rulesReading('topology').flatMap((rule) =>
    TOPOLOGY_FINDINGS[rule.id](t).map((finding) => ({
      path: finding.path,
      message: finding.message,
      fix: rule.fix({ topology: t }),
      severity: validationSeverity(rule),
      rule: rule.id,
    })),
  );
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function withoutPaths(input: unknown, issues: readonly z.core.$ZodIssue[]): unknown {
  const clone = structuredClone(input) as unknown;
  for (const issue of issues) {
    const paths = issue.code === 'unrecognized_keys' ? issue.keys.map((k) => [...issue.path, k]) : [issue.path];
    for (const p of paths) {
      if (p.length === 0) return {};
      let node: unknown = clone;
      for (const key of p.slice(0, -1)) node = node !== null && typeof node === 'object' ? (node as Record<PropertyKey, unknown>)[key] : undefined;
      if (node !== null && typeof node === 'object') delete (node as Record<PropertyKey, unknown>)[p[p.length - 1]!];
    }
  }
  return clone;
}

/**
 * Validates without throwing and reports every problem at once: schema errors, and the
 * cross-field rules evaluated on what is left once the invalid values fall back to defaults.
 */
export function checkTopology(input: unknown): { topology?: Topology; issues: TopologyIssue[] } {
  const parsed = topologySchema.safeParse(input ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.flatMap((issue): TopologyIssue[] => {
      const path = issue.path.map(String).join('.');
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map((key) => {
          const full = path ? `${path}.${key}` : key;
          const renamed = RENAMED_TOPOLOGY_KEYS[full];
          return {
            path: full,
            message: renamed ? 'unknown key (renamed)' : 'unknown key',
            fix: renamed ? `rename it to ${renamed}` : `remove or rename it; valid keys are in the configuration reference in README.md`,
            severity: 'error',
          };
        });
      }
      return [{ path: path || '(root)', message: messageForZodIssue(issue), fix: fixForZodIssue(path, issue), severity: 'error' }];
    });
    const rest = topologySchema.safeParse(withoutPaths(input ?? {}, parsed.error.issues));
    if (rest.success) {
      const reported = new Set(issues.map((i) => i.path));
      issues.push(...crossFieldIssues(rest.data).filter((i) => !reported.has(i.path)));
    }
    return { issues };
  }
  const issues = crossFieldIssues(parsed.data);
  if (issues.some((i) => i.severity === 'error')) return { issues };
  return { topology: deepFreeze(parsed.data) as Topology, issues };
}

/**
 * Validates a raw topology once, at the edge: throws a TopologyError listing every problem,
 * or returns the frozen topology with its warnings.
 */
export function validateTopology(input: unknown, source = 'topology'): ValidatedTopology {
  const { topology, issues } = checkTopology(input);
  if (!topology) throw new TopologyError(issues.filter((i) => i.severity === 'error'), source);
  return { topology, warnings: issues };
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** A short, stable checksum of a topology: equal topologies give equal checksums. */
export function topologyChecksum(topology: Topology): string {
  return createHash('sha256').update(canonicalJson(topology)).digest('hex').slice(0, 16);
}
