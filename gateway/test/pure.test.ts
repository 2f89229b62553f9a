import { generateKeyPairSync } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { CloseCodes, closeAction } from '../src/close-codes.js';
import { DEFAULTS, GatewayConfigError, loadConfig } from '../src/config.js';
import { positiveId } from '../src/auth/tokens.js';
import { bearerToken, presentedToken, selectProtocol, tokenFromProtocols, tokenProtocols } from '../src/auth/credentials.js';
import { domainEntryProblem, isHostAllowed, normaliseDomainEntry, originHost, widgetOrigin } from '../src/origin/allowed-domains.js';
import { matchEndpoint } from '../src/access/endpoints.js';
import { mergeReplay } from '../src/broker/merge-replay.js';
import { compareEventIds, detachedCopy, dialogIdempotencyKey, eventFrame, eventIdProblem, eventTs, eventType, IDEMPOTENCY_KEY_MAX_LENGTH, isEventId, isIdempotencyKey, parseBrokerMessage, type BrokerEvent } from '../src/broker/protocol.js';
import { MemoryBroker } from '../src/broker/memory-broker.js';
import { LIBRARY_NAME, LIBRARY_SOURCE, LIBRARY_VERSION, PUBLISH_FUNCTION, VERSION_FUNCTION } from '../src/broker/publisher.js';
import { sanitizeUrl } from '../src/log/logger.js';
import { Admission } from '../src/limits/admission.js';
import { TrustedProxies, clientAddress, isLoopbackAddress, parseCidr } from '../src/limits/client-ip.js';
import { ExpirySchedule } from '../src/connection/expiry-schedule.js';
import { checkGrant } from '../src/access/grant.js';
import { revocationReason } from '../src/hub/reauthorizer.js';
import { parsePublishBody } from '../src/http/publish-request.js';
import { DialogHub } from '../src/hub/dialog-hub.js';
import { ACCESS_CHANGES_CHANNEL, LISTENER_BACKOFF, applyAccessChange, listenerBackoffMs, parseAccessChange, type AccessChangeTargets, type ReauthScope } from '../src/access/access-changes.js';
import { RevokedSiteTokens } from '../src/access/revoked-site-tokens.js';
import { Reauthorizer, type ReauthMember } from '../src/hub/reauthorizer.js';
import { createLogger } from '../src/log/logger.js';
import type { DialogAccess } from '../src/access/dialog-access.js';
import { CONFIG_BASE as base } from './harness.js';

// The pure parts, exhaustively: config parsing, close-code ranges, token transport, origin
// matching (public-suffix wildcards), trusted proxies, grants, expiry buckets, endpoint parsing,
// replay merging, URL redaction, admission. The token claim matrix is in tokens.test.ts.

describe('config', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig(base);
    expect(c).toMatchObject({
      port: DEFAULTS.PORT,
      host: '0.0.0.0',
      broker: 'redis',
      heartbeatMs: 25_000,
      drainWindowMs: 5000,
      maxPayloadBytes: 65_536,
      sendBufferBytes: 1_048_576,
      maxConnections: 50_000,
      maxConnectionsPerIp: 500,
      handshakesPerIpPerSecond: 50,
      historyLength: 1000,
      historyTtlS: 86_400,
      legacyWidgetAuth: false,
      reauthIntervalMs: 15_000,
      tokenPolicy: { issuer: 'replyx', adminAudience: 'replyx-admin', adminMaxTtlS: 86_400, siteMaxTtlS: 2_592_000, widgetTtlS: 900 },
      logLevel: 'info',
    });
    expect(c.trustedProxies.cidrs).toEqual(['127.0.0.1/32', '::1/128']);
  });

  it('reads TRUSTED_PROXIES as a CIDR list ("none" trusts nobody) and refuses anything else', () => {
    expect(loadConfig({ ...base, TRUSTED_PROXIES: '10.0.0.0/8, 192.0.2.7,fd00::/8' }).trustedProxies.cidrs).toEqual(['10.0.0.0/8', '192.0.2.7/32', 'fd00::/8']);
    expect(loadConfig({ ...base, TRUSTED_PROXIES: 'none' }).trustedProxies.cidrs).toEqual([]);
    expect(() => loadConfig({ ...base, TRUSTED_PROXIES: '10.0.0.0/33' })).toThrow(/^TRUSTED_PROXIES: not an IP address or CIDR: "10.0.0.0\/33"/);
    expect(() => loadConfig({ ...base, TRUSTED_PROXIES: 'nginx' })).toThrow(/TRUSTED_PROXIES/);
  });

  it('needs every signing secret, 32+ characters each and all different, and names the one that is wrong', () => {
    const line = (env: Record<string, string | undefined>) => {
      try {
        loadConfig({ ...base, ...env });
      } catch (err) {
        return (err as GatewayConfigError).toLine();
      }
      return 'accepted';
    };
    expect(line({ JWT_SECRET: 'x'.repeat(31) })).toMatch(/^error RPX_GATEWAY_CONFIG: JWT_SECRET: must be at least 32 characters — set JWT_SECRET to a random string of 32\+ characters/);
    expect(line({ SITE_TOKEN_SECRET: undefined })).toMatch(/^error RPX_GATEWAY_CONFIG: SITE_TOKEN_SECRET: is required — set SITE_TOKEN_SECRET/);
    expect(line({ WIDGET_TOKEN_SECRET: 'short' })).toMatch(/^error RPX_GATEWAY_CONFIG: WIDGET_TOKEN_SECRET: must be at least 32 characters/);
    expect(line({ SITE_TOKEN_SECRET: base.JWT_SECRET })).toMatch(/SITE_TOKEN_SECRET: must differ from JWT_SECRET/);
    expect(line({ WIDGET_TOKEN_SECRET: base.SITE_TOKEN_SECRET })).toMatch(/WIDGET_TOKEN_SECRET: must differ/);
    expect(line({ DEBUG_TOKEN: 'd'.repeat(31) })).toMatch(/DEBUG_TOKEN: must be at least 32 characters/);
    expect(line({ REAUTH_INTERVAL_MS: '60001' })).toMatch(/REAUTH_INTERVAL_MS: must be at most 60000/);
    expect(line({ LEGACY_WIDGET_AUTH: 'maybe' })).toMatch(/LEGACY_WIDGET_AUTH: must be one of/);
    expect(loadConfig({ ...base, LEGACY_WIDGET_AUTH: '1', JWT_ISSUER: 'https://auth.example.com', ADMIN_TOKEN_MAX_TTL_S: '3600' })).toMatchObject({
      legacyWidgetAuth: true,
      tokenPolicy: { issuer: 'https://auth.example.com', adminMaxTtlS: 3600 },
    });
  });

  it('accepts the seed variables SERVICE_MODE=websocket and UVICORN_WORKERS=1, refuses others', () => {
    expect(() => loadConfig({ ...base, SERVICE_MODE: 'websocket', UVICORN_WORKERS: '1' })).not.toThrow();
    expect(() => loadConfig({ ...base, UVICORN_WORKERS: '4' })).toThrow(/UVICORN_WORKERS: must be 1/);
  });

  it.each([
    [{ PORT: '99999' }, 'PORT'],
    [{ HEARTBEAT_MS: 'fast' }, 'HEARTBEAT_MS'],
    [{ BROKER: 'kafka' }, 'BROKER'],
    [{ REDIS_URL: 'http://x' }, 'REDIS_URL'],
    [{ REDIS_URL: '' }, 'REDIS_URL'],
    [{ DATABASE_URL: undefined }, 'DATABASE_URL'],
    [{ JWT_SECRET: undefined }, 'JWT_SECRET'],
    [{ JWT_PUBLIC_KEY: 'not a pem' }, 'JWT_PUBLIC_KEY'],
    [{ PUBLISH_KEY: 'short' }, 'PUBLISH_KEY'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ TRUSTED_PROXIES: 'everyone' }, 'TRUSTED_PROXIES'],
  ])('%o names %s in one line with a fix', (override, variable) => {
    let err: unknown;
    try {
      loadConfig({ ...base, ...override });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GatewayConfigError);
    const line = (err as GatewayConfigError).toLine();
    expect(line.split('\n')).toHaveLength(1);
    expect(line.startsWith(`error RPX_GATEWAY_CONFIG: ${variable}:`)).toBe(true);
    expect(line).toContain(' — ');
  });

  it('does not echo secret values in the error', () => {
    expect(() => loadConfig({ ...base, PUBLISH_KEY: 'tiny' })).toThrow(/^PUBLISH_KEY: must be at least 32 characters$/);
    expect(() => loadConfig({ ...base, JWT_SECRET: 'tiny' })).toThrow(/^JWT_SECRET: must be at least 32 characters$/);
  });

  it('needs no Redis with BROKER=memory, and refuses two JWT keys', () => {
    expect(loadConfig({ ...base, REDIS_URL: undefined, BROKER: 'memory' }).broker).toBe('memory');
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    expect(() => loadConfig({ ...base, JWT_PUBLIC_KEY: publicKey })).toThrow(/exactly one key/);
  });
});

describe('close codes', () => {
  it('maps ranges to client actions', () => {
    expect(closeAction(CloseCodes.UNAUTHORIZED.code)).toBe('stop');
    expect(closeAction(CloseCodes.BAD_REQUEST.code)).toBe('stop');
    expect(closeAction(CloseCodes.OVER_LIMIT.code)).toBe('backoff');
    expect(closeAction(CloseCodes.SLOW_CONSUMER.code)).toBe('backoff');
    expect(closeAction(CloseCodes.NOT_ROUTED.code)).toBe('backoff');
    expect(closeAction(CloseCodes.DRAINING.code)).toBe('reconnect-now');
    expect(closeAction(1009)).toBe('standard');
    const codes = Object.values(CloseCodes).map((c) => c.code);
    expect(codes.sort()).toEqual([1009, 1011, 4001, 4001, 4001, 4003, 4004, 4009, 4100, 4101, 4102, 4200]);
    expect([CloseCodes.TOKEN_EXPIRED.reason, CloseCodes.ACCESS_REVOKED.reason]).toEqual(['token expired', 'access revoked']);
    for (const c of Object.values(CloseCodes)) expect(Buffer.byteLength(c.reason)).toBeLessThanOrEqual(123);
  });
});

describe('token transport', () => {
  it('reads the token from the replyx.token subprotocol, then Bearer, then the deprecated query parameter', () => {
    const params = new URLSearchParams('token=q&site_token=s');
    expect(tokenProtocols('a.b.c')).toEqual(['replyx.v1', 'replyx.token.a.b.c']);
    expect(tokenFromProtocols('replyx.v1, replyx.token.a.b.c')).toBe('a.b.c');
    expect(tokenFromProtocols(['replyx.v1', 'replyx.token.x'])).toBe('x');
    expect(tokenFromProtocols('replyx.v1, replyx.token.')).toBeUndefined();
    expect(tokenFromProtocols(undefined)).toBeUndefined();
    expect(presentedToken({ 'sec-websocket-protocol': 'replyx.v1, replyx.token.p', authorization: 'Bearer b' }, params, 'token')).toEqual({ token: 'p', source: 'protocol' });
    expect(presentedToken({ authorization: 'Bearer b' }, params, 'token')).toEqual({ token: 'b', source: 'bearer' });
    expect(presentedToken({}, params, 'site_token')).toEqual({ token: 's', source: 'query' });
    expect(presentedToken({}, params, undefined)).toBeUndefined();
    expect([bearerToken('bearer abc'), bearerToken('Basic abc'), bearerToken('Bearer a b'), bearerToken(undefined)]).toEqual(['abc', undefined, undefined, undefined]);
  });

  it('answers replyx.v1 only, never a token protocol', () => {
    expect(selectProtocol(new Set(['replyx.v1', 'replyx.token.a.b.c']))).toBe('replyx.v1');
    expect(selectProtocol(new Set(['replyx.token.a.b.c']))).toBe(false);
    expect(selectProtocol(new Set())).toBe(false);
  });

  it('positiveId accepts positive integers and decimal strings only', () => {
    expect([positiveId(5), positiveId('12'), positiveId(0), positiveId(-1), positiveId(1.5), positiveId('1e3'), positiveId(null)]).toEqual([5, 12, undefined, undefined, undefined, undefined, undefined]);
  });
});

describe('origins', () => {
  it('extracts hosts from http(s) origins only', () => {
    expect(originHost('https://Example.COM:8443/path')).toBe('example.com');
    expect(originHost('http://example.com.')).toBe('example.com');
    expect(originHost('null')).toBeUndefined();
    expect(originHost('file:///etc/passwd')).toBeUndefined();
    expect(originHost('example.com')).toBeUndefined();
  });

  it('answers the same from its memory as from parsing, for short and long texts alike', () => {
    const long = `https://${'a'.repeat(300)}.example.com`;
    const cases: [string, string | undefined][] = [
      ['https://Shop.Example.com', 'shop.example.com'],
      ['http://a.b:8080/x?y#z', 'a.b'],
      ['HTTPS://X.COM.', 'x.com'],
      ['http://0x7f.1', '127.0.0.1'],
      ['https://xn--nxasmq6b.example', 'xn--nxasmq6b.example'],
      ['https://bad host', undefined],
      ['ftp://x.example', undefined],
      ['http://', undefined],
      [long, `${'a'.repeat(300)}.example.com`],
      [`${long}:99999`, undefined],
    ];
    // Twice each: the first answer is parsed (and remembered when short), the second is remembered.
    for (let round = 0; round < 2; round++) for (const [text, host] of cases) expect([text, originHost(text)]).toEqual([text, host]);
  });

  it('normalises entries and rejects unusable ones', () => {
    expect(normaliseDomainEntry(' https://Example.com:443/ ')).toBe('example.com');
    expect(normaliseDomainEntry('*.Example.com')).toBe('*.example.com');
    expect(normaliseDomainEntry('*')).toBeUndefined();
    expect(normaliseDomainEntry('a.*.com')).toBeUndefined();
    expect(normaliseDomainEntry('')).toBeUndefined();
  });

  it('ignores wildcards over public suffixes (Public Suffix List, private section too), single labels and IPs', () => {
    for (const entry of ['*.com', '*.co.uk', '*.github.io', '*.s3.amazonaws.com', '*.vercel.app', '*.localhost', '*.127.0.0.1', 'https://*.COM/']) {
      expect(domainEntryProblem(entry), entry).toBe('public-suffix-wildcard');
      expect(normaliseDomainEntry(entry), entry).toBeUndefined();
    }
    for (const entry of ['*.example.com', '*.example.co.uk', '*.me.github.io', 'com', 'github.io', 'localhost']) expect(domainEntryProblem(entry), entry).toBeUndefined();
    expect(domainEntryProblem('a.*.com')).toBe('unusable');
    expect(isHostAllowed('evil.com', ['*.com'])).toBe(false);
    expect(isHostAllowed('attacker.github.io', ['*.github.io', 'shop.example.com'])).toBe(false);
    expect(isHostAllowed('shop.example.com', ['*.github.io', 'shop.example.com'])).toBe(true);
    expect(isHostAllowed('a.me.github.io', ['*.me.github.io'])).toBe(true);
  });

  it('matches exact hosts and wildcards (subdomains only, not the apex)', () => {
    const allowed = ['example.com', '*.shop.example.org'];
    expect(isHostAllowed('example.com', allowed)).toBe(true);
    expect(isHostAllowed('www.example.com', allowed)).toBe(false);
    expect(isHostAllowed('a.shop.example.org', allowed)).toBe(true);
    expect(isHostAllowed('a.b.shop.example.org', allowed)).toBe(true);
    expect(isHostAllowed('shop.example.org', allowed)).toBe(false);
    expect(isHostAllowed('evilshop.example.org', allowed)).toBe(false);
    expect(isHostAllowed('example.com.evil.net', allowed)).toBe(false);
    expect(isHostAllowed('example.com', [])).toBe(false);
  });

  it('prefers parent_origin over the Origin header; missing is refused', () => {
    expect(widgetOrigin('https://site.example', 'https://widget.cdn')).toMatchObject({ ok: true, host: 'site.example' });
    expect(widgetOrigin(null, 'https://site.example')).toMatchObject({ ok: true, host: 'site.example' });
    expect(widgetOrigin(null, undefined)).toEqual({ ok: false, reason: 'missing' });
    expect(widgetOrigin('', undefined)).toEqual({ ok: false, reason: 'missing' });
    expect(widgetOrigin('not a url', 'https://site.example')).toEqual({ ok: false, reason: 'malformed' });
  });
});

describe('endpoints', () => {
  it('matches the three seed paths and nothing else', () => {
    expect(matchEndpoint('/ws/dialogs/123?token=t')).toMatchObject({ kind: 'admin', dialogSegment: '123' });
    expect(matchEndpoint('/ws/widget/dialogs/123?assistant_id=3')?.kind).toBe('widget');
    expect(matchEndpoint('/ws/site/dialogs/100/?site_token=x')?.kind).toBe('site');
    expect(matchEndpoint('/ws/site/dialogs/100?site_token=x')?.params.get('site_token')).toBe('x');
    expect(matchEndpoint('/ws/other/dialogs/1')).toBeUndefined();
    expect(matchEndpoint('/ws/dialogs/1/extra')).toBeUndefined();
    expect(matchEndpoint('/health')).toBeUndefined();
  });
});

describe('broker protocol', () => {
  it('decodes `<id>|<audience>|<json>` channel messages', () => {
    const json = '{"id":"1732780000000-7","type":"message:new","dialog_id":5,"data":{"text":"a|b"},"ts":1732780000000}';
    expect(parseBrokerMessage(5, `1732780000000-7||${json}`)).toEqual({ id: '1732780000000-7', dialogId: 5, audience: [], json });
    expect(parseBrokerMessage(5, `1-0|admin,widget|${json}`)?.audience).toEqual(['admin', 'widget']);
  });

  it.each(['', 'no-bars', '|admin|{}', '1-0|admin', '1-0|robots|{}'])('refuses the malformed message %j', (message) => {
    expect(parseBrokerMessage(1, message)).toBeUndefined();
  });

  it('detachedCopy keeps the text (ids are remembered per dialog without pinning the message)', () => {
    for (const s of ['', '1-0', '1732780000000-0', 'ü'.repeat(20), 'x'.repeat(1000)]) expect(detachedCopy(s)).toBe(s);
  });
});

describe('resume merge', () => {
  const ev = (id: string): BrokerEvent => ({ id, dialogId: 1, audience: [], json: `{"id":"${id}"}` });
  it('orders by id, drops duplicates and anything at or before the last delivered id', () => {
    const replayed = ['10-0', '10-1', '11-0'].map(ev);
    const buffered = ['11-0', '12-0', '10-1', '9-5'].map(ev);
    expect(mergeReplay(replayed, buffered, '9-9').map((e) => e.id)).toEqual(['10-0', '10-1', '11-0', '12-0']);
    expect(mergeReplay(replayed, buffered, '10-1').map((e) => e.id)).toEqual(['11-0', '12-0']);
    expect(mergeReplay([], buffered, undefined).map((e) => e.id)).toEqual(['9-5', '10-1', '11-0', '12-0']);
  });
  it('compareEventIds orders numerically, not lexically', () => {
    expect(compareEventIds('9-0', '10-0')).toBeLessThan(0);
    expect(compareEventIds('10-2', '10-10')).toBeLessThan(0);
    expect(compareEventIds('10-1', '10-1')).toBe(0);
  });
});

describe('logging and limits', () => {
  it('redacts secret query parameters in URLs', () => {
    expect(sanitizeUrl('/ws/dialogs/1?token=abc.def.ghi&since=1-0')).toBe('/ws/dialogs/1?token=[redacted]&since=1-0');
    expect(sanitizeUrl('/ws/site/dialogs/1?since=1-0&site_token=xyz')).toBe('/ws/site/dialogs/1?since=1-0&site_token=[redacted]');
    expect(sanitizeUrl('/ws/site/dialogs/1?site%5Ftoken=xyz')).toBe('/ws/site/dialogs/1?site%5Ftoken=[redacted]');
    expect(sanitizeUrl('/health')).toBe('/health');
  });

  it('admission: handshakes per second, per-IP and total connections', () => {
    const a = new Admission({ maxConnections: 3, maxConnectionsPerIp: 2, handshakesPerIpPerSecond: 3 });
    expect(a.admit('1.1.1.1', 0)).toBeUndefined();
    expect(a.admit('1.1.1.1', 0)).toBeUndefined();
    expect(a.admit('1.1.1.1', 0)).toBe('max-connections-per-ip');
    expect(a.admit('1.1.1.1', 0)).toBe('handshake-rate');
    expect(a.admit('2.2.2.2', 0)).toBeUndefined();
    expect(a.admit('3.3.3.3', 0)).toBe('max-connections');
    a.release('1.1.1.1');
    expect(a.admit('1.1.1.1', 1000)).toBeUndefined();
    for (const ip of ['1.1.1.1', '1.1.1.1', '2.2.2.2']) a.release(ip);
    expect(a.total).toBe(0);
    expect(a.addresses).toBe(0);
    a.sweep(5000);
    expect(a.trackedHandshakeWindows).toBe(0);
  });

  it('believes X-Real-IP / X-Forwarded-For only from trusted proxies', () => {
    const req = (peer: string, headers: Record<string, string> = {}) => ({ socket: { remoteAddress: peer }, headers }) as unknown as IncomingMessage;
    const local = new TrustedProxies(['127.0.0.1/32', '::1/128']);
    expect(clientAddress(req('127.0.0.1', { 'x-real-ip': '203.0.113.9' }), local)).toBe('203.0.113.9');
    expect(clientAddress(req('::ffff:127.0.0.1', { 'x-forwarded-for': '198.51.100.1, 203.0.113.9' }), local)).toBe('203.0.113.9');
    expect(clientAddress(req('::1', { 'x-real-ip': '203.0.113.9' }), local)).toBe('203.0.113.9');
    // A private peer is not a proxy unless configured: it cannot claim another address.
    expect(clientAddress(req('10.0.0.7', { 'x-real-ip': '203.0.113.9' }), local)).toBe('10.0.0.7');
    expect(clientAddress(req('10.0.0.7', { 'x-real-ip': '203.0.113.9' }), new TrustedProxies(['10.0.0.0/8']))).toBe('203.0.113.9');
    expect(clientAddress(req('127.0.0.1', { 'x-real-ip': 'not-an-ip' }), local)).toBe('127.0.0.1');
    expect(clientAddress(req('127.0.0.1', { 'x-real-ip': '203.0.113.9' }), new TrustedProxies([]))).toBe('127.0.0.1');
    expect([parseCidr('10.0.0.0/8'), parseCidr('::1'), parseCidr('10.0.0.0/33'), parseCidr('10.0.0.0/8/1'), parseCidr('x')]).toEqual([
      { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
      { address: '::1', prefix: 128, family: 'ipv6' },
      undefined,
      undefined,
      undefined,
    ]);
    expect([isLoopbackAddress('127.0.0.2'), isLoopbackAddress('::1'), isLoopbackAddress('::ffff:127.0.0.1'), isLoopbackAddress('10.0.0.1')]).toEqual([true, true, true, false]);
  });

  it('reads ts and type from a broker frame without parsing data', () => {
    const json = '{"id":"1-0","type":"message:new","dialog_id":5,"data":{"ts":1,"type":"x"},"ts":1732780000123}';
    expect(eventTs(json)).toBe(1732780000123);
    expect(eventType(json)).toBe('message:new');
    expect(eventType('{"id":"1-0","type":"a\\"b"}')).toBe('a"b');
  });

  it('publish body: de-duplicates audience', () => {
    expect(parsePublishBody('{"dialog_id":1,"type":"m","data":null,"audience":["admin","admin"]}')).toEqual({ ok: true, input: { dialogId: 1, type: 'm', data: null, audience: ['admin'] } });
  });
});

describe('hub', () => {
  it('join/leave report first/last, audience narrows recipients, nothing stays behind', () => {
    const hub = new DialogHub();
    const admin = { kind: 'admin' as const };
    const widget = { kind: 'widget' as const };
    expect(hub.join(1, admin)).toBe(true);
    expect(hub.join(1, widget)).toBe(false);
    expect([...hub.recipients(1, ['widget'])]).toEqual([widget]);
    expect([...hub.recipients(1)]).toHaveLength(2);
    expect(hub.leave(1, admin)).toBe(false);
    expect(hub.leave(1, widget)).toBe(true);
    expect(hub.size).toBe(0);
    expect(hub.dialogCount).toBe(0);
  });
});

describe('grants and re-authorization', () => {
  const access = { dialogId: 5, assistantId: 3, userId: 1, allowedDomains: ['example.com', '*.example.org'] };

  it('checks ownership first (the same "not-found" for missing and foreign dialogs), then the origin', () => {
    expect(checkGrant({ kind: 'admin', userId: 1 }, 5, access)).toBe('ok');
    expect(checkGrant({ kind: 'admin', userId: 2 }, 5, access)).toBe('not-found');
    expect(checkGrant({ kind: 'admin', userId: 1 }, 5, null)).toBe('not-found');
    expect(checkGrant({ kind: 'admin', userId: 1 }, 6, access)).toBe('not-found');
    expect(checkGrant({ kind: 'site', userId: 1, assistantId: 3, jti: 'j-000001' }, 5, access)).toBe('ok');
    expect(checkGrant({ kind: 'site', userId: 1, assistantId: 3, dialogId: 5, jti: 'j-000001' }, 5, access)).toBe('ok');
    expect(checkGrant({ kind: 'site', userId: 1, assistantId: 3, dialogId: 6, jti: 'j-000001' }, 5, access)).toBe('not-found');
    expect(checkGrant({ kind: 'site', userId: 2, assistantId: 3, jti: 'j-000001' }, 5, access)).toBe('not-found');
    expect(checkGrant({ kind: 'site', userId: 1, assistantId: 3, jti: 'j-000001', originHost: 'evil.test' }, 5, access)).toBe('origin');
    expect(checkGrant({ kind: 'site', userId: 1, assistantId: 3, jti: 'j-000001', originHost: '' }, 5, access)).toBe('origin');
    expect(checkGrant({ kind: 'widget', assistantId: 3, originHost: 'a.example.org' }, 5, access)).toBe('ok');
    expect(checkGrant({ kind: 'widget', assistantId: 4, originHost: 'evil.test' }, 5, access)).toBe('not-found');
    expect(checkGrant({ kind: 'widget', assistantId: 3, originHost: 'evil.test' }, 5, access)).toBe('origin');
  });

  it('names why a grant no longer holds', () => {
    const none = () => false;
    expect(revocationReason({ kind: 'site', userId: 1, assistantId: 3, jti: 'j-000001' }, 5, access, (j) => j === 'j-000001')).toBe('site token revoked');
    expect(revocationReason({ kind: 'admin', userId: 1 }, 5, { ...access, userId: 2 }, none)).toBe('dialog belongs to another owner now');
    expect(revocationReason({ kind: 'admin', userId: 1 }, 5, null, none)).toBe('dialog no longer exists');
    expect(revocationReason({ kind: 'widget', assistantId: 3, originHost: 'example.com' }, 5, { ...access, allowedDomains: [] }, none)).toBe('origin no longer in allowed domains');
    expect(revocationReason({ kind: 'widget', assistantId: 3, originHost: 'example.com' }, 5, access, none)).toBeUndefined();
  });

  it('expiry schedule: buckets by second, sweeps only what expired, once; never-expiring items are not tracked', () => {
    const t0 = 1_700_000_000_000;
    const schedule = new ExpirySchedule<{ expiresAt: number; name: string }>(t0);
    const a = { expiresAt: t0 / 1000 + 1, name: 'a' };
    const b = { expiresAt: t0 / 1000 + 1, name: 'b' };
    const c = { expiresAt: t0 / 1000 + 3, name: 'c' };
    const gone = { expiresAt: t0 / 1000 + 2, name: 'gone' };
    for (const item of [a, b, c, gone]) expect(schedule.add(item)).toBe(true);
    expect(schedule.add({ expiresAt: 0, name: 'never' })).toBe(true);
    expect(schedule.size).toBe(4);
    schedule.delete(gone);
    const expired: string[] = [];
    schedule.sweep((i) => expired.push(i.name), t0 + 999);
    expect(expired).toEqual([]);
    schedule.sweep((i) => expired.push(i.name), t0 + 1000);
    expect(expired).toEqual(['a', 'b']);
    schedule.sweep((i) => expired.push(i.name), t0 + 1500);
    expect(expired).toEqual(['a', 'b']);
    // An item whose second was already swept is refused: the caller closes it at once.
    expect(schedule.add({ expiresAt: t0 / 1000 + 1, name: 'late' })).toBe(false);
    // A long pause walks the buckets, not the seconds.
    schedule.sweep((i) => expired.push(i.name), t0 + 86_400_000);
    expect(expired).toEqual(['a', 'b', 'c']);
    expect(schedule.size).toBe(0);
  });
});

describe('event ids, idempotency keys and the memory broker (issue 13)', () => {
  it('compares ids part by part as unsigned integers, beyond 2^53', () => {
    expect(compareEventIds('1-2', '1-10')).toBeLessThan(0);
    expect(compareEventIds('9-0', '10-0')).toBeLessThan(0);
    expect(compareEventIds('10-0', '10-0')).toBe(0);
    expect(compareEventIds('1-9007199254740993', '1-9007199254740992')).toBeGreaterThan(0);
    expect(compareEventIds('18446744073709551615-0', '18446744073709551614-5')).toBeGreaterThan(0);
    expect(compareEventIds('007-1', '7-1')).toBe(0);
  });

  it('says why a since value is not an event id: malformed, or a part above 2^64-1', () => {
    for (const ok of ['0-0', '1732780000000-0', '18446744073709551615-18446744073709551615']) expect(eventIdProblem(ok), ok).toBeUndefined();
    for (const bad of ['', 'abc', '1', '1-', '-1', '1-2-3', '１-2', ' 1-2', '1-2 ', '123456789012345678901-0']) expect(eventIdProblem(bad), bad).toMatch(/^since must be an event id/);
    for (const big of ['18446744073709551616-0', '0-18446744073709551616', '99999999999999999999-0']) expect(eventIdProblem(big), big).toMatch(/^since has a part above 18446744073709551615/);
    expect(isEventId('99999999999999999999-0')).toBe(false);
  });

  it('idempotency keys: 1-200 of A-Z a-z 0-9 _ . : -, in a key of the dialog', () => {
    expect(isIdempotencyKey('message:42:2026-11-28T08:20:15.832Z')).toBe(true);
    for (const bad of ['', 'a b', 'x'.repeat(IDEMPOTENCY_KEY_MAX_LENGTH + 1), 'a/b', 'ключ']) expect(isIdempotencyKey(bad), bad).toBe(false);
    expect(isIdempotencyKey('x'.repeat(IDEMPOTENCY_KEY_MAX_LENGTH))).toBe(true);
    expect(dialogIdempotencyKey(7, 'm:1')).toBe('replyx:dialog:7:idem:m:1');
    expect(parsePublishBody('{"dialog_id":1,"type":"t","data":1,"idempotency_key":"k-1"}')).toMatchObject({ ok: true, input: { idempotencyKey: 'k-1' } });
  });

  it('the memory broker publishes once per idempotency key within the window, then again', async () => {
    const delivered: string[] = [];
    const broker = new MemoryBroker({ historyLength: 10, historyTtlS: 60, maxDialogs: 10, idempotencyTtlS: 1 }, { onEvent: (e) => delivered.push(e.id), onResync: () => undefined });
    await broker.subscribe(1);
    const a = await broker.publish({ dialogId: 1, type: 't', data: 1, idempotencyKey: 'k' });
    expect(await broker.publish({ dialogId: 1, type: 't', data: 2, idempotencyKey: 'k' })).toBe(a);
    const other = await broker.publish({ dialogId: 2, type: 't', data: 1, idempotencyKey: 'k' });
    expect(other).not.toBe(a);
    expect(delivered).toEqual([a]);
    broker.sweep(Date.now() + 1001);
    expect(await broker.publish({ dialogId: 1, type: 't', data: 3, idempotencyKey: 'k' })).not.toBe(a);
    await expect(broker.publish({ dialogId: 1, type: 't', data: 1, idempotencyKey: 'a b' })).rejects.toThrow(/idempotencyKey/);
    expect(await broker.history(1, '99999999999999-0')).toMatchObject({ status: 'ahead' });
  });

  it('the library version and name come from replyx.lua; the event frame matches what the library writes', () => {
    expect(LIBRARY_NAME).toBe('replyx');
    expect(Number.isInteger(LIBRARY_VERSION) && LIBRARY_VERSION > 0).toBe(true);
    expect(LIBRARY_SOURCE).toContain(`'${PUBLISH_FUNCTION}'`);
    expect(LIBRARY_SOURCE).toContain(`'${VERSION_FUNCTION}'`);
    expect(JSON.parse(eventFrame('1-0', 'message:new', 5, '{"a":"\\u00e9"}', 9))).toEqual({ id: '1-0', type: 'message:new', dialog_id: 5, data: { a: 'é' }, ts: 9 });
  });
});

describe('access change notifications', () => {
  it('parses the three payloads, and an empty one as "anything may have changed"', () => {
    expect(parseAccessChange('{"dialog_id":123}')).toEqual({ kind: 'dialog', dialogId: 123 });
    expect(parseAccessChange('{"dialog_id":"9007199254740991"}')).toEqual({ kind: 'dialog', dialogId: 9007199254740991 });
    expect(parseAccessChange('{"assistant_id":10}')).toEqual({ kind: 'assistant', assistantId: 10 });
    expect(parseAccessChange('{"site_token":"demo-site1-token"}')).toEqual({ kind: 'site-token', jti: 'demo-site1-token' });
    for (const empty of [undefined, '', '  ']) expect(parseAccessChange(empty)).toEqual({ kind: 'all' });
  });

  it('refuses anything else: bad JSON, other keys, several keys, ids that are not positive safe integers, empty jti', () => {
    for (const payload of ['{', '[]', 'null', '42', '"x"', '{}', '{"user_id":1}', '{"dialog_id":1,"assistant_id":2}', '{"dialog_id":0}', '{"dialog_id":-1}', '{"dialog_id":1.5}', '{"dialog_id":9007199254740993}', '{"dialog_id":"01"}', '{"dialog_id":"1e3"}', '{"assistant_id":null}', '{"site_token":""}', '{"site_token":7}']) {
      expect(parseAccessChange(payload), payload).toBeUndefined();
    }
  });

  it('names the channel once; the reconnect backoff doubles from 100 ms to at most 5 s plus up to 20 % jitter', () => {
    expect(ACCESS_CHANGES_CHANNEL).toMatch(/^[a-z_]+$/);
    expect([0, 1, 2, 5, 6, 50].map((n) => listenerBackoffMs(n, 0))).toEqual([100, 200, 400, 3200, LISTENER_BACKOFF.maxMs, LISTENER_BACKOFF.maxMs]);
    expect(listenerBackoffMs(0, 1)).toBe(120);
    expect(listenerBackoffMs(50, 1)).toBe(6000);
  });

  /** Targets that record what a change invalidated. */
  function recorder(): { targets: AccessChangeTargets; calls: string[]; scopes: ReauthScope[] } {
    const calls: string[] = [];
    const scopes: ReauthScope[] = [];
    const targets: AccessChangeTargets = {
      access: { forget: (id) => calls.push(`forget ${id}`), forgetAssistant: (id) => calls.push(`forgetAssistant ${id}`), clear: () => calls.push('clear') },
      revoked: { invalidate: () => calls.push('revoked stale') },
      reauthorizer: { request: (scope) => scopes.push(scope) },
    };
    return { targets, calls, scopes };
  }

  it('a dialog drops its row and re-checks its sockets; an assistant its rows and every socket; a site token the revoked list and its sockets; all everything', () => {
    const cases: [Parameters<typeof applyAccessChange>[0], string[], ReauthScope][] = [
      [{ kind: 'dialog', dialogId: 5 }, ['forget 5'], { dialogs: [5] }],
      [{ kind: 'assistant', assistantId: 10 }, ['forgetAssistant 10'], { all: true }],
      [{ kind: 'site-token', jti: 'j1' }, ['revoked stale'], { siteTokens: ['j1'] }],
      [{ kind: 'all' }, ['clear', 'revoked stale'], { all: true }],
    ];
    for (const [change, calls, scope] of cases) {
      const r = recorder();
      applyAccessChange(change, r.targets);
      expect(r.calls, change.kind).toEqual(calls);
      expect(r.scopes, change.kind).toEqual([scope]);
    }
  });
});

describe('RevokedSiteTokens', () => {
  /** A load whose reads the test answers one by one. */
  function controlledLoad(): { load: () => Promise<readonly string[]>; reads: ((ids: readonly string[]) => void)[] } {
    const reads: ((ids: readonly string[]) => void)[] = [];
    return { reads, load: () => new Promise((resolve) => reads.push(resolve)) };
  }

  it('trusts its copy for maxAgeMs, shares one read between concurrent checks', async () => {
    const { load, reads } = controlledLoad();
    const revoked = new RevokedSiteTokens(load, 60_000);
    const checks = [revoked.isRevoked('a'), revoked.isRevoked('b')];
    expect(reads).toHaveLength(1);
    reads[0]!(['a']);
    expect(await Promise.all(checks)).toEqual([true, false]);
    expect(await revoked.isRevoked('a')).toBe(true);
    expect(reads).toHaveLength(1);
  });

  it('invalidate(): the next check reads again, without sharing a read that began before the change, which cannot undo the newer one', async () => {
    const { load, reads } = controlledLoad();
    const revoked = new RevokedSiteTokens(load, 60_000);
    const first = revoked.refresh();
    revoked.invalidate();
    const check = revoked.isRevoked('x');
    expect(reads).toHaveLength(2);
    reads[1]!(['x']);
    expect(await check).toBe(true);
    // The read from before the change comes back late, with the old list: it is ignored.
    reads[0]!([]);
    await first;
    expect(revoked.has('x')).toBe(true);
    expect(await revoked.isRevoked('x')).toBe(true);
    expect(reads).toHaveLength(2);
  });

  it('a read that began before invalidate() does not count as fresh: the next check reads again', async () => {
    const { load, reads } = controlledLoad();
    const revoked = new RevokedSiteTokens(load, 60_000);
    const before = revoked.refresh();
    revoked.invalidate();
    reads[0]!([]);
    await before;
    const check = revoked.isRevoked('y');
    expect(reads).toHaveLength(2);
    reads[1]!(['y']);
    expect(await check).toBe(true);
  });
});

describe('Reauthorizer.request (what an access change re-checks)', () => {
  /** A hub with an admin on dialog 1, a site token j2 on dialog 2 and a widget on dialog 3; every dialog moved to user 9. */
  function fixture() {
    const members = new DialogHub<ReauthMember>();
    const dialogOf = new Map<ReauthMember, number>();
    const join = (dialogId: number, member: ReauthMember) => {
      members.join(dialogId, member);
      dialogOf.set(member, dialogId);
    };
    join(1, { kind: 'admin', grant: { kind: 'admin', userId: 1 } });
    join(2, { kind: 'site', grant: { kind: 'site', userId: 1, assistantId: 10, jti: 'j2' } });
    join(3, { kind: 'widget', grant: { kind: 'widget', assistantId: 10, originHost: 'example.com', dialogId: 3 } });
    const reads: number[][] = [];
    const revoked: string[] = [];
    /** While set, reads wait for it: a check is running. */
    let gate: Promise<void> | undefined;
    const reauth = new Reauthorizer<ReauthMember>(
      {
        members,
        revoke: (conn, why) => {
          revoked.push(`${conn.kind}: ${why}`);
          members.leave(dialogOf.get(conn)!, conn);
          return true;
        },
      },
      {
        lookupMany: async (ids) => {
          reads.push([...ids]);
          await gate;
          return new Map<number, DialogAccess | null>(ids.map((id) => [id, { dialogId: id, assistantId: 99, userId: 9, allowedDomains: [] }]));
        },
        revoked: { refresh: async () => undefined, has: () => false },
      },
      60_000,
      createLogger('silent'),
    );
    const hold = (): (() => void) => {
      let release!: () => void;
      gate = new Promise((resolve) => (release = resolve));
      return release;
    };
    return { reauth, reads, revoked, hold };
  }

  it('re-reads only the open dialogs a change names, and those with a socket of the named site token', async () => {
    const f = fixture();
    f.reauth.request({ dialogs: [1, 42] });
    await f.reauth.settled();
    expect(f.reads).toEqual([[1]]);
    expect(f.revoked).toEqual(['admin: dialog belongs to another owner now']);
    f.reauth.request({ siteTokens: ['j2'] });
    await f.reauth.settled();
    expect(f.reads).toEqual([[1], [2]]);
    f.reauth.request({ siteTokens: ['other'], dialogs: [77] });
    await f.reauth.settled();
    expect(f.reads).toHaveLength(2);
  });

  it('merges the requests of one turn into one read; all means every open dialog', async () => {
    const f = fixture();
    f.reauth.request({ dialogs: [3] });
    f.reauth.request({ siteTokens: ['j2'] });
    await f.reauth.settled();
    expect(f.reads).toEqual([[2, 3]]);
    const g = fixture();
    g.reauth.request({ dialogs: [3] });
    g.reauth.request({ all: true });
    await g.reauth.settled();
    expect(g.reads).toEqual([[1, 2, 3]]);
    expect(g.revoked).toHaveLength(3);
  });

  it('requests made while a check runs are merged into one check right after it', async () => {
    const f = fixture();
    const release = f.hold();
    f.reauth.request({ dialogs: [1] });
    await new Promise((r) => setImmediate(r));
    expect(f.reads).toEqual([[1]]);
    f.reauth.request({ dialogs: [2] });
    f.reauth.request({ dialogs: [3] });
    await new Promise((r) => setImmediate(r));
    expect(f.reads).toHaveLength(1);
    release();
    await f.reauth.settled();
    expect(f.reads).toEqual([[1], [2, 3]]);
  });
});
