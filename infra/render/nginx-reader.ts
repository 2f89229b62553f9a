import { ReplyxError } from '../errors.js';

// The one reader of nginx config text: text in, directive tree out, plus the questions asked of
// a config (which location serves a URI, what a directive inherits, which log formats are in
// effect). It sits next to the renderer it reads back; the architecture rules and the render
// tests read the rendered (and the running) config through it instead of grepping text, so they
// keep working when the template's layout or whitespace changes.

/** One directive: its name, its arguments (quotes removed), its line and, for blocks, children. */
export interface NginxDirective {
  readonly name: string;
  readonly args: readonly string[];
  readonly line: number;
  /** The directive as written, without `;` or the block: words joined by one space, quotes kept. */
  readonly text: string;
  readonly block?: readonly NginxDirective[];
}

interface Token {
  readonly kind: 'word' | ';' | '{' | '}';
  readonly value: string;
  /** The word as written (quotes and escapes kept). */
  readonly raw: string;
  readonly line: number;
}

function parseError(message: string, line: number): ReplyxError {
  return new ReplyxError('RPX_NGINX_PARSE', `nginx config line ${line}: ${message}`, 'fix the template or file that produced this config; `nginx -t` shows the same spot');
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '\n') {
      line += 1;
      i += 1;
    } else if (c === ' ' || c === '\t' || c === '\r') {
      i += 1;
    } else if (c === '#') {
      while (i < text.length && text[i] !== '\n') i += 1;
    } else if (c === ';' || c === '{' || c === '}') {
      tokens.push({ kind: c, value: c, raw: c, line });
      i += 1;
    } else if (c === '"' || c === "'") {
      const start = line;
      const from = i;
      let value = '';
      i += 1;
      while (i < text.length && text[i] !== c) {
        if (text[i] === '\\' && i + 1 < text.length) {
          // nginx keeps the backslash except before the quote character itself.
          if (text[i + 1] !== c) value += '\\';
          i += 1;
        }
        if (text[i] === '\n') line += 1;
        value += text[i];
        i += 1;
      }
      if (i >= text.length) throw parseError('unterminated quoted string', start);
      i += 1;
      tokens.push({ kind: 'word', value, raw: text.slice(from, i), line: start });
    } else {
      let value = '';
      while (i < text.length && !/[\s;{}#"']/.test(text[i]!)) {
        // `${var}` is a variable, not a block: keep its braces inside the word.
        if (text[i] === '$' && text[i + 1] === '{') {
          const close = text.indexOf('}', i);
          if (close < 0) throw parseError('unterminated ${variable}', line);
          value += text.slice(i, close + 1);
          i = close + 1;
        } else {
          value += text[i];
          i += 1;
        }
      }
      tokens.push({ kind: 'word', value, raw: value, line });
    }
  }
  return tokens;
}

/** Parses nginx config text into a directive tree; throws RPX_NGINX_PARSE with the line on bad syntax. */
export function parseNginxConfig(text: string): readonly NginxDirective[] {
  const tokens = tokenize(text);
  let pos = 0;
  const parseBlock = (depth: number): NginxDirective[] => {
    const out: NginxDirective[] = [];
    while (pos < tokens.length) {
      const t = tokens[pos]!;
      if (t.kind === '}') {
        if (depth === 0) throw parseError('unexpected "}"', t.line);
        pos += 1;
        return out;
      }
      if (t.kind !== 'word') throw parseError(`unexpected "${t.value}"`, t.line);
      const args: string[] = [];
      const words = [t.raw];
      pos += 1;
      for (;;) {
        const next = tokens[pos];
        if (next === undefined) throw parseError(`directive "${t.value}" has no ";" or "{"`, t.line);
        pos += 1;
        if (next.kind === 'word') {
          args.push(next.value);
          words.push(next.raw);
        } else if (next.kind === ';') {
          out.push({ name: t.value, args, line: t.line, text: words.join(' ') });
          break;
        } else if (next.kind === '{') {
          out.push({ name: t.value, args, line: t.line, text: words.join(' '), block: parseBlock(depth + 1) });
          break;
        } else throw parseError(`unexpected "}" inside directive "${t.value}"`, next.line);
      }
    }
    if (depth > 0) throw parseError('missing "}" at end of file', tokens[tokens.length - 1]?.line ?? 1);
    return out;
  };
  return parseBlock(0);
}

/** Direct children of `block` named `name`. */
export function childrenNamed(block: readonly NginxDirective[] | undefined, name: string): NginxDirective[] {
  return (block ?? []).filter((d) => d.name === name);
}

/** The `http { }` block's children, or an empty list when there is none. */
export function httpBlock(tree: readonly NginxDirective[]): readonly NginxDirective[] {
  return childrenNamed(tree, 'http')[0]?.block ?? [];
}

/** The server block that listens on `port` (or the first server block when none names it). */
export function serverForPort(tree: readonly NginxDirective[], port?: number): NginxDirective | undefined {
  const servers = childrenNamed(httpBlock(tree), 'server');
  if (port !== undefined) {
    const byPort = servers.find((s) => childrenNamed(s.block, 'listen').some((l) => listenPort(l.args[0] ?? '') === port));
    if (byPort) return byPort;
  }
  return servers[0];
}

function listenPort(arg: string): number | undefined {
  const m = /(?:^|:)(\d+)$/.exec(arg);
  return m ? Number(m[1]) : undefined;
}

/** A location as nginx sees it: its modifier (`=`, `^~`, `~`, `~*` or none) and its pattern. */
export interface LocationSpec {
  readonly modifier: '' | '=' | '^~' | '~' | '~*' | '@';
  readonly pattern: string;
  readonly directive: NginxDirective;
}

function locationSpec(d: NginxDirective): LocationSpec | undefined {
  const [a, b] = d.args;
  if (a === undefined) return undefined;
  if (b !== undefined && ['=', '^~', '~', '~*'].includes(a)) return { modifier: a as LocationSpec['modifier'], pattern: b, directive: d };
  if (a.startsWith('@')) return { modifier: '@', pattern: a, directive: d };
  // nginx also accepts the modifier glued to the pattern, e.g. `location =/health`.
  const glued = /^(=|\^~|~\*|~)(.+)$/.exec(a);
  if (glued) return { modifier: glued[1] as LocationSpec['modifier'], pattern: glued[2]!, directive: d };
  return { modifier: '', pattern: a, directive: d };
}

/**
 * Picks the top-level location of a server block that nginx would use for `uri`: an exact
 * match, else the longest prefix if it has `^~`, else the first matching regex, else the
 * longest prefix. Nested locations are not considered (the templates do not use them).
 */
export function matchLocation(server: NginxDirective, uri: string): NginxDirective | undefined {
  const specs = childrenNamed(server.block, 'location')
    .map(locationSpec)
    .filter((s): s is LocationSpec => s !== undefined && s.modifier !== '@');
  const exact = specs.find((s) => s.modifier === '=' && s.pattern === uri);
  if (exact) return exact.directive;
  const prefixes = specs.filter((s) => (s.modifier === '' || s.modifier === '^~') && uri.startsWith(s.pattern));
  const longest = prefixes.sort((x, y) => y.pattern.length - x.pattern.length)[0];
  if (longest?.modifier === '^~') return longest.directive;
  for (const s of specs) {
    if (s.modifier !== '~' && s.modifier !== '~*') continue;
    let re: RegExp;
    try {
      re = new RegExp(s.pattern, s.modifier === '~*' ? 'i' : '');
    } catch {
      continue;
    }
    if (re.test(uri)) return s.directive;
  }
  return longest?.directive;
}

/**
 * The directives named `name` that apply inside the innermost block of `chain` (innermost
 * first). nginx inherits a directive from an outer level only when the inner level does not
 * set it at all, which is why `proxy_set_header` in a location drops the server's ones.
 */
export function effectiveDirectives(chain: readonly (readonly NginxDirective[] | undefined)[], name: string): NginxDirective[] {
  for (const block of chain) {
    const found = childrenNamed(block, name);
    if (found.length > 0) return found;
  }
  return [];
}

/** A `host:port` an upstream or proxy_pass points at. */
export interface UpstreamServer {
  readonly host: string;
  readonly port: number;
}

/** Parses `proxy_pass http://name:port/path` into its scheme-less host and optional port. */
export function parseProxyPass(arg: string): { host: string; port?: number } | undefined {
  const m = /^https?:\/\/([^/:]+)(?::(\d+))?/.exec(arg);
  if (!m) return undefined;
  return m[2] === undefined ? { host: m[1]! } : { host: m[1]!, port: Number(m[2]) };
}

/**
 * Resolves a proxy_pass argument to the servers it reaches: the members of the upstream
 * block of that name, or the host:port itself (port 80 by default, like nginx).
 */
export function resolveProxyPass(tree: readonly NginxDirective[], arg: string): { upstream?: string; servers: UpstreamServer[] } | undefined {
  const target = parseProxyPass(arg);
  if (!target) return undefined;
  const upstream = childrenNamed(httpBlock(tree), 'upstream').find((u) => u.args[0] === target.host);
  if (upstream && target.port === undefined) {
    const servers = childrenNamed(upstream.block, 'server').flatMap((s) => {
      const m = /^(?:unix:.*|(.+?)(?::(\d+))?)$/.exec(s.args[0] ?? '');
      return m?.[1] === undefined ? [] : [{ host: m[1], port: m[2] === undefined ? 80 : Number(m[2]) }];
    });
    return { upstream: target.host, servers };
  }
  return { servers: [{ host: target.host, port: target.port ?? 80 }] };
}

/** Converts an nginx time value (`30`, `30s`, `2m`, `1h`, `500ms`) to milliseconds. */
export function nginxTimeMs(value: string): number | undefined {
  const re = /(\d+)(ms|s|m|h|d|w|M|y)?/g;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, M: 2_592_000_000, y: 31_536_000_000 };
  if (!/^(\d+(ms|s|m|h|d|w|M|y)?\s*)+$/.test(value.trim())) return undefined;
  let total = 0;
  for (const m of value.matchAll(re)) total += Number(m[1]) * unit[m[2] ?? 's']!;
  return total;
}

/**
 * nginx variables that can carry a token, so no log format may contain them: the request line,
 * the URI with its query, the query string and any one argument (`$arg_*`; tokens travel as
 * `?token=` and `?site_token=`), and the Referer (the embedding page's URL can carry its own).
 */
export const TOKEN_CARRYING_VARIABLES = ['$request', '$request_uri', '$args', '$query_string', '$arg_*', '$http_referer'] as const;

/** The token-carrying variables a log format uses, as written there (`$request`, `${args}`, `$arg_token`). */
export function tokenCarryingVariablesIn(format: string): string[] {
  const found: string[] = [];
  // nginx looks variable names up case-insensitively; `${name}` is the same variable as `$name`.
  for (const m of format.matchAll(/\$(?:\{(\w+)\}|(\w+))/g)) {
    const name = `$${(m[1] ?? m[2] ?? '').toLowerCase()}`;
    const carries = TOKEN_CARRYING_VARIABLES.some((v) => (v.endsWith('*') ? name.startsWith(v.slice(0, -1)) : name === v));
    if (carries) found.push(m[0]);
  }
  return found;
}

/** nginx's predefined `combined` format: what an access_log writes when it names no format. */
export const COMBINED_LOG_FORMAT = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"';

/** The `log_format` definitions of the http block, by name; a format's quoted parts are joined as nginx joins them. */
export function logFormats(tree: readonly NginxDirective[]): Map<string, string> {
  const formats = new Map<string, string>();
  for (const d of childrenNamed(httpBlock(tree), 'log_format')) {
    formats.set(d.args[0] ?? '', d.args.slice(1).filter((a) => !a.startsWith('escape=')).join(''));
  }
  return formats;
}

/** One access log a request can be written to, and where in the config it applies. */
export interface AccessLogInEffect {
  /** Where it applies, e.g. `server 127.0.0.1:8080 location /ws/`. */
  readonly scope: string;
  /** `off`, or the name of the format it writes (`combined` when none is named). */
  readonly format: string;
  /** The access_log directive; absent when nothing sets one and nginx logs `combined` by default. */
  readonly directive?: NginxDirective;
}

// Blocks inside a server that can set their own access_log.
const LOGGING_BLOCKS = new Set(['location', 'if', 'limit_except']);

/**
 * Every access log in effect somewhere in the http block: for each server and each location
 * (nested ones included), the access_log directives nginx applies there after inheritance, or
 * nginx's default `combined` log when no level sets one.
 */
export function accessLogsInEffect(tree: readonly NginxDirective[]): AccessLogInEffect[] {
  const http = httpBlock(tree);
  const out: AccessLogInEffect[] = [];
  const visit = (chain: readonly (readonly NginxDirective[] | undefined)[], scope: string): void => {
    const logs = effectiveDirectives(chain, 'access_log');
    if (logs.length === 0) out.push({ scope, format: 'combined' });
    for (const log of logs) out.push({ scope, format: log.args[0] === 'off' ? 'off' : (log.args[1] ?? 'combined'), directive: log });
  };
  const walk = (block: readonly NginxDirective[] | undefined, chain: readonly (readonly NginxDirective[] | undefined)[], scope: string): void => {
    for (const inner of (block ?? []).filter((d) => LOGGING_BLOCKS.has(d.name))) {
      const innerChain = [inner.block, ...chain];
      const innerScope = `${scope} ${inner.text}`;
      visit(innerChain, innerScope);
      walk(inner.block, innerChain, innerScope);
    }
  };
  for (const server of childrenNamed(http, 'server')) {
    const listen = childrenNamed(server.block, 'listen')[0]?.args[0];
    const scope = listen === undefined ? 'server' : `server ${listen}`;
    visit([server.block, http], scope);
    walk(server.block, [server.block, http], scope);
  }
  return out;
}
