import { parseNginxConfig, type NginxDirective } from './nginx-reader.js';

// Drift between two nginx configs as a diff of directives, not of bytes or header checksums: a
// hand edit that keeps the checksum comment still shows up, and whitespace or comment changes
// do not. Each directive is named by the blocks it sits in, so a changed timeout reads as
// `http > server > location /ws/ > proxy_read_timeout 10s`.

/** One directive that only one side has. */
export interface DirectiveChange {
  /** `-`: in the expected config only (removed from the other); `+`: in the other only (added). */
  readonly op: '-' | '+';
  /** The enclosing blocks and the directive, joined by ` > `. */
  readonly path: string;
}

/** Every directive of a tree as its block path (comments and layout are not directives). */
export function flattenDirectives(tree: readonly NginxDirective[], parents: readonly string[] = []): string[] {
  const out: string[] = [];
  for (const d of tree) {
    const here = [...parents, d.text];
    if (d.block) {
      out.push(`${here.join(' > ')} {`);
      out.push(...flattenDirectives(d.block, here));
    } else {
      out.push(here.join(' > '));
    }
  }
  return out;
}

/**
 * The directives that differ between `expected` and `actual` config text (multiset difference,
 * in the order each side has them): removed ones first, then added ones. Throws RPX_NGINX_PARSE
 * when either side does not parse.
 */
export function directiveDiff(expected: string, actual: string): DirectiveChange[] {
  const a = flattenDirectives(parseNginxConfig(expected));
  const b = flattenDirectives(parseNginxConfig(actual));
  const count = (list: readonly string[]) => {
    const m = new Map<string, number>();
    for (const x of list) m.set(x, (m.get(x) ?? 0) + 1);
    return m;
  };
  const inB = count(b);
  const inA = count(a);
  const removed: DirectiveChange[] = [];
  for (const x of a) {
    const n = inB.get(x) ?? 0;
    if (n > 0) inB.set(x, n - 1);
    else removed.push({ op: '-', path: x });
  }
  const added: DirectiveChange[] = [];
  for (const x of b) {
    const n = inA.get(x) ?? 0;
    if (n > 0) inA.set(x, n - 1);
    else added.push({ op: '+', path: x });
  }
  return [...removed, ...added];
}

/** Formats changes one per line: `- http > … > worker_shutdown_timeout 30s`. */
export function formatDirectiveDiff(changes: readonly DirectiveChange[]): string[] {
  return changes.map((c) => `${c.op} ${c.path}`);
}

/** Whether the running config routes `/ws/` differently from the rendered one: a `/ws/` location's proxying or an upstream differs. */
export function wsRoutingChanged(rendered: string, running: string): boolean {
  try {
    return directiveDiff(rendered, running).some((c) => / > location [^>]*\/ws\/[^>]* > proxy_pass |(^|> )upstream /.test(c.path));
  } catch {
    // A running config that does not parse routes nothing we can vouch for.
    return true;
  }
}
