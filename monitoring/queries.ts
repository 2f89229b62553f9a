import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ALERT_RULES_FILE, DASHBOARD_FILE } from '../infra/render/prometheus.js';

// Reading the shipped monitoring artefacts as data: the alert rules, the dashboard's queries,
// and the metric names a PromQL expression selects. The tests hold both against what the
// services really expose; the targets upload the same files.

/** One alerting rule of monitoring/alerts.yml. */
export interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>> & { readonly runbook_url: string; readonly summary: string };
}

/** The alerting rules of a rules file's text, in file order. */
export function alertRules(text: string = readFileSync(ALERT_RULES_FILE, 'utf8')): AlertRule[] {
  const doc = parse(text) as { groups: { rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules).filter((r) => typeof r.alert === 'string');
}

/** One query of the dashboard: the panel it draws and its PromQL. */
export interface DashboardQuery {
  readonly panel: string;
  readonly refId: string;
  readonly expr: string;
}

interface Panel {
  readonly title?: string;
  readonly panels?: readonly Panel[];
  readonly targets?: readonly { readonly refId?: string; readonly expr?: string }[];
}

/** Every query of a Grafana dashboard JSON (rows' nested panels included). */
export function dashboardQueries(json: string = readFileSync(DASHBOARD_FILE, 'utf8')): DashboardQuery[] {
  const walk = (panels: readonly Panel[]): DashboardQuery[] =>
    panels.flatMap((p) => [
      ...(p.targets ?? []).filter((t) => typeof t.expr === 'string').map((t) => ({ panel: p.title ?? '?', refId: t.refId ?? '?', expr: t.expr! })),
      ...walk(p.panels ?? []),
    ]);
  return walk((JSON.parse(json) as { panels?: readonly Panel[] }).panels ?? []);
}

// Words that are PromQL syntax, not series: operators, modifiers, and the label lists they take.
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/**
 * The metric names a PromQL expression selects, sorted and unique. Strings, label matchers,
 * ranges and grouping lists are removed first; a word followed by "(" is a function or an
 * aggregation, not a metric. Enough for the expressions we write; not a full PromQL parser
 * (promtool parses them; see monitoring.test.ts).
 */
export function metricNamesIn(expr: string): string[] {
  const stripped = expr
    .replace(/#[^\n]*/g, ' ')
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+-?\d+[a-z]+/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![\w.:$])[a-zA-Z_:][\w:]*/g)) {
    const word = m[0];
    const after = stripped.slice(m.index + word.length);
    if (/^\s*\(/.test(after) || KEYWORDS.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names].sort();
}

/** One sample line of the Prometheus text format. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: string;
}

/** The metric families of a text exposition: declared type, and every sample under the family's name. */
export interface ExposedFamily {
  readonly name: string;
  readonly type: string;
  readonly samples: Sample[];
}

/** Parses the Prometheus text format (what GET /metrics answers) into families. */
export function parseExposition(text: string): Map<string, ExposedFamily> {
  const families = new Map<string, ExposedFamily>();
  const suffixes = ['_bucket', '_sum', '_count', '_created'];
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      families.set(type[1]!, { name: type[1]!, type: type[2]!, samples: [] });
      continue;
    }
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const name = m[1]!;
    const family = families.get(name) ?? families.get(suffixes.reduce((n, s) => (n.endsWith(s) ? n.slice(0, -s.length) : n), name));
    if (!family) throw new Error(`sample ${name} has no # TYPE line`);
    family.samples.push({ name, labels, value: m[3]! });
  }
  return families;
}

/** Every sample name in an exposition (histograms contribute _bucket, _sum and _count). */
export function sampleNames(families: ReadonlyMap<string, ExposedFamily>): Set<string> {
  return new Set([...families.values()].flatMap((f) => f.samples.map((s) => s.name)));
}
