import { parse as parseDomain } from 'tldts';

// Domain validation for the widget and site endpoints. An allowed-domains entry is a host
// (`example.com`) or a wildcard (`*.example.com`). A wildcard matches any subdomain at any
// depth but NOT the apex: list `example.com` as well when the apex should be allowed. Ports
// and schemes in entries are ignored, so `https://example.com:8443/` means `example.com`.
// A wildcard must sit below a registrable domain: `*.com`, `*.co.uk`, `*.github.io` (public
// suffixes, from the Public Suffix List via tldts, private section included), `*.localhost` and
// wildcards over IP addresses would allow hosts anyone can register, so they are ignored here and
// refused by whatever writes allowed domains (see domainEntryProblem).

/** The outcome of choosing which origin to check for a widget connection. */
export type OriginChoice = { ok: true; origin: string; host: string } | { ok: false; reason: 'missing' | 'malformed' };

// Origins repeat too (every widget token of a site carries the same one, browsers send the same
// Origin): `new URL` was a measurable share of a handshake, so each distinct text is parsed once.
// The cache is bounded like the entry cache, and holds short texts only (a client picks its
// Origin header: 10,000 long ones must not pin megabytes); what it returns is what parsing returns.
const ORIGIN_CACHE_MAX = 10_000;
const ORIGIN_CACHE_MAX_LENGTH = 256;
const originCache = new Map<string, string | undefined>();

/** The host (lowercase, no port, no trailing dot) of an http(s) origin/URL; undefined if not one. */
export function originHost(value: string | null | undefined): string | undefined {
  if (!value || value === 'null') return undefined;
  if (value.length > ORIGIN_CACHE_MAX_LENGTH) return parseOriginHost(value);
  const hit = originCache.get(value);
  if (hit !== undefined || originCache.has(value)) return hit;
  const host = parseOriginHost(value);
  if (originCache.size >= ORIGIN_CACHE_MAX) originCache.clear();
  originCache.set(value, host);
  return host;
}

function parseOriginHost(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  const host = url.hostname.toLowerCase().replace(/\.$/, '');
  return host === '' ? undefined : host;
}

/** Why an allowed-domains entry cannot be used, or undefined when it can. */
export type DomainEntryProblem = 'unusable' | 'public-suffix-wildcard';

interface ParsedEntry {
  readonly entry?: string;
  readonly problem?: DomainEntryProblem;
}

// Entries repeat on every handshake of an assistant's dialogs: parse each distinct one once.
const ENTRY_CACHE_MAX = 10_000;
const entryCache = new Map<string, ParsedEntry>();

function parseEntry(raw: string): ParsedEntry {
  const hit = entryCache.get(raw);
  if (hit) return hit;
  let s = raw.trim().toLowerCase();
  s = s.replace(/^[a-z][a-z0-9+.-]*:\/\//, '');
  s = s.replace(/[/?#].*$/, '').replace(/:\d+$/, '').replace(/\.$/, '');
  const bare = s.startsWith('*.') ? s.slice(2) : s;
  let parsed: ParsedEntry;
  if (s === '' || bare === '' || bare.includes('*') || !/^[a-z0-9.-]+$|^\[[0-9a-f:.]+\]$/.test(bare)) parsed = { problem: 'unusable' };
  else if (s.startsWith('*.') && parseDomain(bare, { allowPrivateDomains: true }).domain === null) parsed = { problem: 'public-suffix-wildcard' };
  else parsed = { entry: s };
  if (entryCache.size >= ENTRY_CACHE_MAX) entryCache.clear();
  entryCache.set(raw, parsed);
  return parsed;
}

/** Normalises an allowed-domains entry to a bare host or `*.host`; undefined when unusable or a public-suffix wildcard. */
export function normaliseDomainEntry(entry: string): string | undefined {
  return parseEntry(entry).entry;
}

/** What is wrong with an allowed-domains entry (for writers, which refuse it, and for warnings). */
export function domainEntryProblem(entry: string): DomainEntryProblem | undefined {
  return parseEntry(entry).problem;
}

/**
 * A pass-through check of allowed-domains lists that reports each entry the matching ignores
 * (`*.com`, unusable entries) once, so an operator learns why an origin is refused; it
 * remembers at most `remember` distinct entries (then starts over).
 */
export function ignoredDomainReporter(report: (entry: string, problem: DomainEntryProblem, assistantId: number) => void, remember = 10_000): (assistantId: number, domains: readonly string[]) => readonly string[] {
  const reported = new Set<string>();
  return (assistantId, domains) => {
    for (const entry of domains) {
      const problem = domainEntryProblem(entry);
      if (!problem || reported.has(entry)) continue;
      if (reported.size >= remember) reported.clear();
      reported.add(entry);
      report(entry, problem, assistantId);
    }
    return domains;
  };
}

/** True when `host` is allowed by one of `allowedDomains` (exact or `*.` wildcard, apex excluded). */
export function isHostAllowed(host: string, allowedDomains: readonly string[]): boolean {
  for (const raw of allowedDomains) {
    const entry = parseEntry(raw).entry;
    if (!entry) continue;
    if (entry.startsWith('*.')) {
      const suffix = entry.slice(1);
      if (host.length > suffix.length && host.endsWith(suffix)) return true;
    } else if (host === entry) {
      return true;
    }
  }
  return false;
}

/**
 * The origin a widget connection is judged by: `parent_origin` when given (the widget runs in
 * our iframe, so the Origin header is ours, not the embedding site's), else the Origin header.
 */
export function widgetOrigin(parentOrigin: string | null, originHeader: string | undefined): OriginChoice {
  const candidate = parentOrigin ?? originHeader;
  if (candidate === undefined || candidate === '' || candidate === 'null') return { ok: false, reason: 'missing' };
  const host = originHost(candidate);
  if (!host) return { ok: false, reason: 'malformed' };
  return { ok: true, origin: candidate, host };
}
