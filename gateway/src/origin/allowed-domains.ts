// Domain validation for the widget and site endpoints. An allowed-domains entry is a host
// (`example.com`) or a wildcard (`*.example.com`). A wildcard matches any subdomain at any
// depth but NOT the apex: list `example.com` as well when the apex should be allowed. Ports
// and schemes in entries are ignored, so `https://example.com:8443/` means `example.com`.

/** The outcome of choosing which origin to check for a widget connection. */
export type OriginChoice = { ok: true; origin: string; host: string } | { ok: false; reason: 'missing' | 'malformed' };

/** The host (lowercase, no port, no trailing dot) of an http(s) origin/URL; undefined if not one. */
export function originHost(value: string | null | undefined): string | undefined {
  if (!value || value === 'null') return undefined;
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

/** Normalises an allowed-domains entry to a bare host or `*.host`; undefined when unusable. */
export function normaliseDomainEntry(entry: string): string | undefined {
  let s = entry.trim().toLowerCase();
  s = s.replace(/^[a-z][a-z0-9+.-]*:\/\//, '');
  s = s.replace(/[/?#].*$/, '').replace(/:\d+$/, '').replace(/\.$/, '');
  if (s === '' || s === '*' || s === '*.') return undefined;
  const bare = s.startsWith('*.') ? s.slice(2) : s;
  if (bare === '' || bare.includes('*') || !/^[a-z0-9.-]+$|^\[[0-9a-f:.]+\]$/.test(bare)) return undefined;
  return s;
}

/** True when `host` is allowed by one of `allowedDomains` (exact or `*.` wildcard, apex excluded). */
export function isHostAllowed(host: string, allowedDomains: readonly string[]): boolean {
  for (const raw of allowedDomains) {
    const entry = normaliseDomainEntry(raw);
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
