import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, importPKCS8 } from 'jose';
import { describe, expect, it } from 'vitest';
import { CloseCodes, closeAction } from '../src/close-codes.js';
import { DEFAULTS, GatewayConfigError, loadConfig } from '../src/config.js';
import { TokenVerifier, positiveId } from '../src/auth/tokens.js';
import { isHostAllowed, normaliseDomainEntry, originHost, widgetOrigin } from '../src/origin/allowed-domains.js';
import { matchEndpoint } from '../src/connection/endpoints.js';
import { mergeReplay } from '../src/broker/merge-replay.js';
import { compareEventIds, detachedCopy, eventTs, eventType, parseBrokerMessage, type BrokerEvent } from '../src/broker/protocol.js';
import { sanitizeUrl } from '../src/log/logger.js';
import { Admission } from '../src/limits/admission.js';
import { isPrivateAddress } from '../src/limits/client-ip.js';
import { parsePublishBody } from '../src/http/publish-request.js';
import { DialogHub } from '../src/hub/dialog-hub.js';
import { JWT_SECRET, adminToken, noneToken, siteToken } from './harness.js';

// The pure parts, exhaustively: config parsing, close-code ranges, tokens (incl. RS256 and alg
// confusion), origin matching, endpoint parsing, replay merging, URL redaction, admission.

const base = { REDIS_URL: 'redis://127.0.0.1:6380', DATABASE_URL: 'postgres://u@127.0.0.1:5433/replyx', JWT_SECRET: 'secret', PUBLISH_KEY: '0123456789abcdef' };

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
      trustProxy: true,
      logLevel: 'info',
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
    [{ TRUST_PROXY: 'maybe' }, 'TRUST_PROXY'],
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
    expect(() => loadConfig({ ...base, PUBLISH_KEY: 'tiny' })).toThrow(/^PUBLISH_KEY: must be at least 16 characters$/);
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
    expect(closeAction(CloseCodes.DRAINING.code)).toBe('reconnect-now');
    expect(closeAction(1009)).toBe('standard');
    const codes = Object.values(CloseCodes).map((c) => c.code);
    expect(codes.sort()).toEqual([1009, 1011, 4001, 4003, 4004, 4009, 4100, 4101, 4200]);
    for (const c of Object.values(CloseCodes)) expect(Buffer.byteLength(c.reason)).toBeLessThanOrEqual(123);
  });
});

describe('tokens', () => {
  const hs = new TokenVerifier({ jwtSecret: JWT_SECRET });

  it('HS256: admin sub and site claims', async () => {
    expect(await hs.verifyAdmin(await adminToken(7))).toEqual({ ok: true, value: { userId: 7 } });
    expect(await hs.verifySite(await siteToken(7, 3))).toEqual({ ok: true, value: { userId: 7, assistantId: 3 } });
    expect(await hs.verifyAdmin(await adminToken('abc'))).toEqual({ ok: false, reason: 'invalid' });
    expect(await hs.verifyAdmin(await adminToken(7, { expiresIn: Math.floor(Date.now() / 1000) - 60 }))).toEqual({ ok: false, reason: 'expired' });
    expect(await hs.verifyAdmin(undefined)).toEqual({ ok: false, reason: 'missing' });
    expect(await hs.verifyAdmin(noneToken({ sub: '7' }))).toEqual({ ok: false, reason: 'invalid' });
    expect(await hs.verifySite(await adminToken(7))).toEqual({ ok: false, reason: 'wrong-type' });
    expect(await hs.verifyAdmin(await siteToken(7, 3))).toEqual({ ok: false, reason: 'wrong-type' });
  });

  it('RS256: accepts RS256, refuses HS256 signed with the public key text (alg confusion) and alg:none', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const rs = new TokenVerifier({ jwtPublicKey: publicKey });
    await rs.ready();
    const good = await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject('9').sign(await importPKCS8(privateKey, 'RS256'));
    expect(await rs.verifyAdmin(good)).toEqual({ ok: true, value: { userId: 9 } });
    const confused = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('9').sign(new TextEncoder().encode(publicKey));
    expect(await rs.verifyAdmin(confused)).toEqual({ ok: false, reason: 'invalid' });
    expect(await rs.verifyAdmin(noneToken({ sub: '9' }))).toEqual({ ok: false, reason: 'invalid' });
    // And the HS256 verifier refuses an RS256 token.
    expect(await hs.verifyAdmin(good)).toEqual({ ok: false, reason: 'invalid' });
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

  it('normalises entries and rejects unusable ones', () => {
    expect(normaliseDomainEntry(' https://Example.com:443/ ')).toBe('example.com');
    expect(normaliseDomainEntry('*.Example.com')).toBe('*.example.com');
    expect(normaliseDomainEntry('*')).toBeUndefined();
    expect(normaliseDomainEntry('a.*.com')).toBeUndefined();
    expect(normaliseDomainEntry('')).toBeUndefined();
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

  it('classifies private addresses', () => {
    for (const ip of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '::1', '::ffff:10.0.0.1', 'fd00::1']) expect(isPrivateAddress(ip)).toBe(true);
    for (const ip of ['8.8.8.8', '172.32.0.1', '2001:db8::1', '']) expect(isPrivateAddress(ip)).toBe(false);
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
