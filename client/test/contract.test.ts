import { describe, expect, it } from 'vitest';
import { compareEventIds as gatewayCompareEventIds } from '../../gateway/src/broker/protocol.js';
import { closeClass, compareEventIds, dialogUrl, isEventId, isJwt, jwtExpiresAt, parseServerFrame, reconnectDelayMs, subprotocols, DEFAULT_TIMING } from '../src/index.js';
import { fakeJwt } from './scripted-server.js';

// The pure parts of the client: close-code classes, backoff, id order (checked against the
// gateway's own comparator), frame parsing, URLs and token reading.

describe('closeClass', () => {
  it.each([
    [4000, 'terminal'],
    [4001, 'terminal'],
    [4003, 'terminal'],
    [4004, 'terminal'],
    [4009, 'terminal'],
    [4099, 'terminal'],
    [4100, 'backoff'],
    [4101, 'backoff'],
    [4102, 'backoff'],
    [4199, 'backoff'],
    [4200, 'soon'],
    [4299, 'soon'],
    [4300, 'backoff'],
    [1000, 'backoff'],
    [1001, 'backoff'],
    [1006, 'backoff'],
    [1009, 'backoff'],
    [1011, 'backoff'],
    [3999, 'backoff'],
  ])('%i → %s', (code, cls) => {
    expect(closeClass(code)).toBe(cls);
  });
});

describe('reconnectDelayMs', () => {
  const timing = { backoffBaseMs: 1000, backoffCapMs: 30_000, soonJitterMs: 2000 };

  it('draws uniformly below a ceiling that doubles per attempt up to the cap', () => {
    const ceilings = [0, 1, 2, 3, 4, 5, 6, 60].map((attempt) => reconnectDelayMs('backoff', attempt, timing, () => 0.999_999));
    expect(ceilings).toEqual([999, 1999, 3999, 7999, 15_999, 29_999, 29_999, 29_999]);
    expect(reconnectDelayMs('backoff', 3, timing, () => 0)).toBe(0);
    expect(reconnectDelayMs('backoff', 3, timing, () => 0.5)).toBe(4000);
  });

  it('reconnects soon (0-2 s) after a drain whatever the attempt', () => {
    expect(reconnectDelayMs('soon', 0, timing, () => 0.5)).toBe(1000);
    expect(reconnectDelayMs('soon', 9, timing, () => 0.999_999)).toBe(1999);
  });

  it('defaults to the values docs/gateway.md advises', () => {
    expect(DEFAULT_TIMING).toEqual(timing);
  });
});

describe('compareEventIds', () => {
  const ids = [
    '0-0',
    '0-1',
    '1-0',
    '9-9',
    '10-0',
    '99-0',
    '100-0',
    '999999999999-5',
    '1000000000000-0',
    '1732780000000-0',
    '1732780000000-1',
    '1732780000000-2',
    '1732780000000-9',
    '1732780000000-10',
    '1732780000000-99',
    '1732780000000-100',
    '1732780000000-9007199254740991',
    '1732780000001-0',
    '9999999999999-0',
    '10000000000000-0',
    '18446744073709551615-0',
  ];

  it('agrees with the gateway on every pair of a table of ids', () => {
    for (const a of ids) {
      for (const b of ids) {
        expect([a, b, Math.sign(compareEventIds(a, b))]).toEqual([a, b, Math.sign(gatewayCompareEventIds(a, b))]);
      }
    }
  });

  it('orders the table as listed (numerically, not lexically)', () => {
    const shuffled = [...ids].reverse().sort();
    expect(shuffled.sort(compareEventIds)).toEqual(ids);
  });

  it('recognises well-formed ids only', () => {
    expect(ids.every(isEventId)).toBe(true);
    for (const bad of ['', '1', '1-', '-1', '1-2-3', 'a-1', '1-1 ', '123456789012345678901-0', 42, null]) expect(isEventId(bad)).toBe(false);
  });
});

describe('parseServerFrame', () => {
  it('reads connected, events, resync and pong', () => {
    expect(parseServerFrame('{"type":"connected","server":"ws-gateway","instance":"gw-1","heartbeat_ms":25000}')).toEqual({
      kind: 'connected',
      frame: { type: 'connected', server: 'ws-gateway', instance: 'gw-1', heartbeat_ms: 25_000 },
    });
    expect(parseServerFrame('{"id":"1732780000000-0","type":"message:new","dialog_id":123,"data":{"text":"hi"},"ts":1732780000000}')).toEqual({
      kind: 'event',
      event: { id: '1732780000000-0', type: 'message:new', dialog_id: 123, data: { text: 'hi' }, ts: 1_732_780_000_000 },
    });
    expect(parseServerFrame('{"type":"resync"}')).toEqual({ kind: 'resync' });
    expect(parseServerFrame('{"type":"pong"}')).toEqual({ kind: 'pong' });
  });

  it('takes the gateway default heartbeat when the connected frame has none', () => {
    expect(parseServerFrame('{"type":"connected","server":"backend"}')).toMatchObject({ frame: { heartbeat_ms: 25_000, server: 'backend', instance: '' } });
    expect(parseServerFrame('{"type":"connected","heartbeat_ms":-1}')).toMatchObject({ frame: { heartbeat_ms: 25_000 } });
  });

  it('an event whose type collides with a control word is still an event', () => {
    expect(parseServerFrame('{"id":"1-0","type":"resync","dialog_id":1,"data":null,"ts":1}')?.kind).toBe('event');
  });

  it.each(['not json', 'null', '[]', '42', '{"type":"hello"}', '{"id":"x","type":"m","dialog_id":1,"ts":1}', '{"id":"1-0","dialog_id":1,"ts":1}', '{"id":"1-0","type":"m","dialog_id":"1","ts":1}', '{"id":"1-0","type":"m","dialog_id":1}'])(
    'ignores %s',
    (text) => {
      expect(parseServerFrame(text)).toBeUndefined();
    },
  );
});

describe('dialogUrl and subprotocols', () => {
  it.each([
    ['ws://127.0.0.1:8080', 'admin', undefined, 'ws://127.0.0.1:8080/ws/dialogs/123'],
    ['wss://chat.example.com/', 'widget', undefined, 'wss://chat.example.com/ws/widget/dialogs/123'],
    ['https://example.com/chat/', 'site', '1732780000000-3', 'wss://example.com/chat/ws/site/dialogs/123?since=1732780000000-3'],
    ['http://localhost:8080', 'admin', '1-0', 'ws://localhost:8080/ws/dialogs/123?since=1-0'],
  ] as const)('%s as %s (since %s) → %s', (base, kind, since, url) => {
    expect(dialogUrl(base, kind, 123, since)).toBe(url);
  });

  it.each([
    ['chat.example.com', 'admin', 1, 'url: must be an absolute ws://, wss://, http:// or https:// URL'],
    ['ftp://example.com', 'admin', 1, 'url: must be a ws://, wss://, http:// or https:// URL'],
    ['wss://example.com/?token=abc', 'admin', 1, 'url: must be a base URL without credentials, query or fragment'],
    ['wss://example.com', 'operator', 1, 'kind: must be "admin", "widget" or "site" (got "operator")'],
    ['wss://example.com', 'admin', 0, 'dialogId: must be a positive whole number (got 0)'],
    ['wss://example.com', 'admin', 1.5, 'dialogId: must be a positive whole number (got 1.5)'],
  ])('refuses %s / %s / %s', (base, kind, dialogId, message) => {
    expect(() => dialogUrl(base, kind as 'admin', dialogId)).toThrow(`RPX_CLIENT_OPTIONS: ${message}`);
  });

  it('offers the protocol name first and the token second', () => {
    expect(subprotocols('a.b.c')).toEqual(['replyx.v1', 'replyx.token.a.b.c']);
  });
});

describe('tokens', () => {
  it('reads exp (seconds) as epoch ms without verifying', () => {
    expect(jwtExpiresAt(fakeJwt({ exp: 1_732_780_000 }))).toBe(1_732_780_000_000);
    expect(jwtExpiresAt(fakeJwt({ sub: '1' }))).toBeUndefined();
    expect(jwtExpiresAt(fakeJwt({ exp: '1732780000' }))).toBeUndefined();
    expect(jwtExpiresAt('a.%%%.c')).toBeUndefined();
    expect(jwtExpiresAt('abc')).toBeUndefined();
  });

  it('reads payloads whose base64url needs padding or uses - and _', () => {
    for (const claims of [{ exp: 1, a: '' }, { exp: 2, a: 'x' }, { exp: 3, a: 'xy' }, { exp: 4, a: '???>>>~~~' }]) expect(jwtExpiresAt(fakeJwt(claims))).toBe(claims.exp * 1000);
  });

  it('accepts JWT-shaped strings only', () => {
    expect(isJwt(fakeJwt({}))).toBe(true);
    for (const bad of ['', 'abc', 'a.b', 'a.b.c.d', 'a b.c.d', 'a.b.c\n', undefined, 1]) expect(isJwt(bad)).toBe(false);
  });
});
