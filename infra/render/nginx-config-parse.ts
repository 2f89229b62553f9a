// Reads back the parts of a rendered nginx config that tests and checks reason about. The
// renderer emits no nested blocks inside locations and no regex locations, which is what lets a
// small reader like this stay exact; `parseLocations` refuses configs that break that shape.

/** One `location` block of a rendered config. */
export interface ParsedLocation {
  /** '' (plain prefix), '^~' (prefix that stops the search) or '=' (exact). */
  readonly modifier: '' | '^~' | '=';
  readonly path: string;
  /** Directives inside the block, one per entry, without the trailing `;`. */
  readonly directives: readonly string[];
}

/** Lists the `location` blocks of a rendered config; throws on regex locations or nested blocks. */
export function parseLocations(config: string): ParsedLocation[] {
  const out: ParsedLocation[] = [];
  const re = /^\s*location\s+(?:(=|\^~|~\*?)\s+)?(\S+)\s*\{([^{}]*)\}/gm;
  for (const m of config.matchAll(re)) {
    const modifier = m[1] ?? '';
    if (modifier === '~' || modifier === '~*') throw new Error(`regex location ${m[2]} would change match precedence`);
    const directives = (m[3] ?? '')
      .split('\n')
      .map((l) => l.replace(/#.*$/, '').trim())
      .filter((l) => l.length > 0)
      .map((l) => l.replace(/;$/, ''));
    out.push({ modifier: modifier as ParsedLocation['modifier'], path: m[2] ?? '', directives });
  }
  const opened = (config.match(/^\s*location\s/gm) ?? []).length;
  if (opened !== out.length) throw new Error(`found ${opened} location blocks but could read only ${out.length}`);
  return out;
}

/** The location nginx picks for a (normalised) URI: exact match, else the longest prefix. */
export function matchLocation(locations: readonly ParsedLocation[], uri: string): ParsedLocation | undefined {
  const exact = locations.find((l) => l.modifier === '=' && l.path === uri);
  if (exact) return exact;
  // Without regex locations, `^~` and plain prefixes both resolve to the longest match.
  return locations
    .filter((l) => l.modifier !== '=' && uri.startsWith(l.path))
    .sort((a, b) => b.path.length - a.path.length)[0];
}

/** The `log_format` definitions of a config, by name. */
export function parseLogFormats(config: string): Map<string, string> {
  const formats = new Map<string, string>();
  for (const m of config.matchAll(/^\s*log_format\s+(\S+)\s+((?:'[^']*'\s*)+);/gm)) {
    const body = [...(m[2] ?? '').matchAll(/'([^']*)'/g)].map((p) => p[1]).join('');
    formats.set(m[1] ?? '', body);
  }
  return formats;
}

/** nginx variables that expose a query string (and with it, tokens); the referer can hold the embedding page's. */
export const QUERY_VARIABLES = /\$(?:request|request_uri|args|query_string|arg_[a-z0-9_]+|http_referer)(?![a-z0-9_])/i;
