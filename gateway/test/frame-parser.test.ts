import { describe, expect, it } from 'vitest';
import * as wsModule from 'ws';
import { feedFrames, isValidCloseCode, MAX_FRAGMENTS, type FrameError, type FrameSink, type RxState } from '../src/transport/frame-parser.js';
import { encodeCloseFrame, encodeFrame } from '../src/transport/frames.js';
import { acceptKey, answerHandshake, parseProtocols } from '../src/transport/handshake.js';
import { selectProtocol } from '../src/auth/credentials.js';

// The transport's pure parts: the frame parser against every rule of RFC 6455 §5 that a server
// enforces, fed whole, in every split of a multi-frame stream and byte by byte; the handshake
// answers; the server frame encoders. Client frames are built here independently (masked, any
// length encoding, any flags) and cross-checked against ws's client framing.

type Event = ['message', string, boolean] | ['ping' | 'pong', string] | ['close', number, string];

/** A sink that records events, and can stop reading after a given number of them. */
class Recorder implements FrameSink {
  rx: RxState | undefined = undefined;
  readonly events: Event[] = [];
  constructor(readonly stopAfter = Infinity) {}
  get reading(): boolean {
    return this.events.length < this.stopAfter && !this.events.some((e) => e[0] === 'close');
  }
  onMessage(data: Buffer, binary: boolean): void {
    this.events.push(['message', binary ? data.toString('hex') : data.toString('utf8'), binary]);
  }
  onControl(opcode: number, payload: Buffer): void {
    this.events.push([opcode === 0x9 ? 'ping' : 'pong', payload.toString('hex')]);
  }
  onCloseFrame(code: number, reason: string): void {
    this.events.push(['close', code, reason]);
  }
}

interface FrameSpec {
  fin?: boolean;
  rsv?: number;
  opcode: number;
  payload?: Buffer | string;
  masked?: boolean;
  /** Length encoding to use: 7, 16 or 64 bits (default: the shortest). */
  lengthBits?: 7 | 16 | 64;
  /** Declared length, when it should differ from the payload's. */
  declared?: number;
}

/** A client frame, built byte by byte from the RFC's layout. */
function clientFrame(spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload) : (spec.payload ?? Buffer.alloc(0));
  const length = spec.declared ?? payload.length;
  const bits = spec.lengthBits ?? (length < 126 ? 7 : length < 65_536 ? 16 : 64);
  const masked = spec.masked ?? true;
  const head = [((spec.fin ?? true) ? 0x80 : 0) | ((spec.rsv ?? 0) << 4) | spec.opcode];
  const maskBit = masked ? 0x80 : 0;
  if (bits === 7) head.push(maskBit | length);
  else if (bits === 16) head.push(maskBit | 126, length >> 8, length & 0xff);
  else {
    head.push(maskBit | 127);
    const big = Buffer.alloc(8);
    big.writeBigUInt64BE(BigInt(length));
    head.push(...big);
  }
  const key = [0x37, 0xfa, 0x21, 0x3d];
  if (masked) head.push(...key);
  const body = Buffer.from(payload.map((b, i) => (masked ? b ^ key[i % 4]! : b)));
  return Buffer.concat([Buffer.from(head), body]);
}

const closePayload = (code: number, reason = '') => Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)]);

/** Feeds all chunks; returns the events and the first error. */
function parse(chunks: Buffer[], maxPayload = 1024, sink = new Recorder()): { events: Event[]; error: FrameError | undefined; sink: Recorder } {
  for (const chunk of chunks) {
    const error = feedFrames(sink, chunk, maxPayload);
    if (error) return { events: sink.events, error, sink };
  }
  return { events: sink.events, error: undefined, sink };
}

describe('frame parser: valid streams', () => {
  const stream = Buffer.concat([
    clientFrame({ opcode: 1, payload: '{"type":"ping"}' }),
    clientFrame({ opcode: 9, payload: 'hb' }),
    clientFrame({ opcode: 1, fin: false, payload: 'frag' }),
    clientFrame({ opcode: 10, payload: '' }), // a control frame between fragments
    clientFrame({ opcode: 0, fin: false, payload: 'men' }),
    clientFrame({ opcode: 0, payload: 'téd' }),
    clientFrame({ opcode: 2, payload: Buffer.from([0, 255, 1]) }),
    clientFrame({ opcode: 1, payload: 'x'.repeat(300) }), // 16-bit length
    clientFrame({ opcode: 1, payload: 'é'.repeat(100), lengthBits: 64 }), // 64-bit length, any encoding accepted
    clientFrame({ opcode: 1, payload: '' }),
    clientFrame({ opcode: 8, payload: closePayload(1000, 'bye ✓') }),
  ]);
  const expected: Event[] = [
    ['message', '{"type":"ping"}', false],
    ['ping', Buffer.from('hb').toString('hex')],
    ['pong', ''],
    ['message', 'fragmentéd', false],
    ['message', '00ff01', true],
    ['message', 'x'.repeat(300), false],
    ['message', 'é'.repeat(100), false],
    ['message', '', false],
    ['close', 1000, 'bye ✓'],
  ];

  it('parses a multi-frame stream in one chunk', () => {
    const { events, error, sink } = parse([stream]);
    expect(error).toBeUndefined();
    expect(events).toEqual(expected);
    expect(sink.rx).toBeUndefined();
  });

  it('gives the same events for every split of the stream into two chunks', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const { events, error } = parse([stream.subarray(0, cut), stream.subarray(cut)]);
      expect({ cut, error, events }).toEqual({ cut, error: undefined, events: expected });
    }
  });

  it('gives the same events for every split into three chunks (both cuts anywhere)', () => {
    for (let a = 0; a <= stream.length; a += 3) {
      for (let b = a; b <= stream.length; b += 5) {
        const { events, error } = parse([stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)]);
        expect({ a, b, error, events }).toEqual({ a, b, error: undefined, events: expected });
      }
    }
  });

  it('parses the stream fed one byte at a time', () => {
    const { events, error } = parse([...stream].map((b) => Buffer.from([b])));
    expect(error).toBeUndefined();
    expect(events).toEqual(expected);
  });

  it('keeps no state at a frame boundary, and the state of a partial frame or an open fragmented message', () => {
    const sink = new Recorder();
    const whole = clientFrame({ opcode: 1, payload: 'abc' });
    expect(feedFrames(sink, whole.subarray(0, 4), 1024)).toBeUndefined();
    expect(sink.rx?.bytes).toBe(4);
    expect(feedFrames(sink, whole.subarray(4), 1024)).toBeUndefined();
    expect(sink.rx).toBeUndefined();
    expect(feedFrames(sink, clientFrame({ opcode: 1, fin: false, payload: 'a' }), 1024)).toBeUndefined();
    expect(sink.rx?.fragments).toHaveLength(1);
    expect(feedFrames(sink, clientFrame({ opcode: 0, payload: 'b' }), 1024)).toBeUndefined();
    expect(sink.rx).toBeUndefined();
    expect(sink.events).toEqual([
      ['message', 'abc', false],
      ['message', 'ab', false],
    ]);
  });

  it('stops at the frame after which the sink stops reading, and after a close frame', () => {
    const two = Buffer.concat([clientFrame({ opcode: 1, payload: 'a' }), clientFrame({ opcode: 1, payload: 'b' })]);
    expect(parse([two], 1024, new Recorder(1)).events).toEqual([['message', 'a', false]]);
    const afterClose = Buffer.concat([clientFrame({ opcode: 8 }), clientFrame({ opcode: 1, payload: 'late' })]);
    expect(parse([afterClose]).events).toEqual([['close', 1005, '']]);
  });

  it('reads frames as ws clients write them (masked, every length encoding)', () => {
    const { Sender } = wsModule as unknown as { Sender: { frame(data: Buffer, options: object): Buffer[] } };
    for (const length of [0, 1, 125, 126, 65_535, 65_536, 70_000]) {
      const payload = Buffer.alloc(length, 0x61);
      // readOnly: true, so ws masks a copy and `payload` stays the expected text.
      const frame = Buffer.concat(Sender.frame(payload, { fin: true, opcode: 1, mask: true, readOnly: true, rsv1: false }));
      const { events, error } = parse([frame], 100_000);
      expect(error).toBeUndefined();
      expect(events).toEqual([['message', payload.toString(), false]]);
    }
  });
});

describe('frame parser: every violation closes with its code', () => {
  const cases: [string, Buffer[], FrameError['code']][] = [
    ['RSV1 set (no extension negotiated)', [clientFrame({ opcode: 1, rsv: 4, payload: 'a' })], 1002],
    ['RSV2 set', [clientFrame({ opcode: 1, rsv: 2, payload: 'a' })], 1002],
    ['RSV3 set', [clientFrame({ opcode: 1, rsv: 1, payload: 'a' })], 1002],
    ...[3, 4, 5, 6, 7, 11, 12, 13, 14, 15].map((op): [string, Buffer[], 1002] => [`reserved opcode ${op}`, [clientFrame({ opcode: op })], 1002]),
    ['an unmasked client frame', [clientFrame({ opcode: 1, payload: 'a', masked: false })], 1002],
    ['a continuation with no message open', [clientFrame({ opcode: 0, payload: 'a' })], 1002],
    ['a text frame inside a fragmented message', [clientFrame({ opcode: 1, fin: false, payload: 'a' }), clientFrame({ opcode: 1, payload: 'b' })], 1002],
    ['a binary frame inside a fragmented message', [clientFrame({ opcode: 2, fin: false, payload: 'a' }), clientFrame({ opcode: 2, payload: 'b' })], 1002],
    ['a fragmented ping', [clientFrame({ opcode: 9, fin: false })], 1002],
    ['a fragmented close', [clientFrame({ opcode: 8, fin: false })], 1002],
    ['a ping over 125 bytes', [clientFrame({ opcode: 9, payload: Buffer.alloc(126) })], 1002],
    ['a pong over 125 bytes (16-bit length)', [clientFrame({ opcode: 10, payload: Buffer.alloc(200) })], 1002],
    ['a close payload of one byte', [clientFrame({ opcode: 8, payload: Buffer.from([3]) })], 1002],
    ['close code 999', [clientFrame({ opcode: 8, payload: closePayload(999) })], 1002],
    ['close code 1004', [clientFrame({ opcode: 8, payload: closePayload(1004) })], 1002],
    ['close code 1005', [clientFrame({ opcode: 8, payload: closePayload(1005) })], 1002],
    ['close code 1006', [clientFrame({ opcode: 8, payload: closePayload(1006) })], 1002],
    ['close code 1015', [clientFrame({ opcode: 8, payload: closePayload(1015) })], 1002],
    ['close code 2999', [clientFrame({ opcode: 8, payload: closePayload(2999) })], 1002],
    ['close code 5000', [clientFrame({ opcode: 8, payload: closePayload(5000) })], 1002],
    ['invalid UTF-8 in a text message', [clientFrame({ opcode: 1, payload: Buffer.from([0xc3, 0x28]) })], 1007],
    ['invalid UTF-8 across fragments', [clientFrame({ opcode: 1, fin: false, payload: Buffer.from([0xe2, 0x82]) }), clientFrame({ opcode: 0, payload: Buffer.from([0x41]) })], 1007],
    ['an overlong UTF-8 encoding', [clientFrame({ opcode: 1, payload: Buffer.from([0xc0, 0xaf]) })], 1007],
    ['a UTF-16 surrogate in UTF-8', [clientFrame({ opcode: 1, payload: Buffer.from([0xed, 0xa0, 0x80]) })], 1007],
    ['invalid UTF-8 in a close reason', [clientFrame({ opcode: 8, payload: Buffer.concat([closePayload(1000), Buffer.from([0xff])]) })], 1007],
    ['a message over maxPayload', [clientFrame({ opcode: 1, payload: 'x'.repeat(1025) })], 1009],
    ['fragments summing over maxPayload', [clientFrame({ opcode: 2, fin: false, payload: Buffer.alloc(600) }), clientFrame({ opcode: 0, payload: Buffer.alloc(600) })], 1009],
    ['a 64-bit length beyond 2^32', [clientFrame({ opcode: 2, declared: 2 ** 40, lengthBits: 64 })], 1009],
  ];

  it.each(cases)('%s', (_name, chunks, code) => {
    const { error } = parse(chunks);
    expect(error?.code).toBe(code);
    expect(Buffer.byteLength(error!.reason)).toBeLessThanOrEqual(123);
  });

  it('1009 carries the registry reason and is known from the header alone, before the payload arrives', () => {
    const header = clientFrame({ opcode: 1, declared: 1_000_000, lengthBits: 64 });
    expect(parse([header.subarray(0, 10)])).toMatchObject({ error: { code: 1009, reason: 'message too big' } });
  });

  it('binary messages are not UTF-8 checked; a message of exactly maxPayload passes', () => {
    expect(parse([clientFrame({ opcode: 2, payload: Buffer.from([0xc3, 0x28]) })]).events).toEqual([['message', 'c328', true]]);
    expect(parse([clientFrame({ opcode: 1, payload: 'x'.repeat(1024) })]).error).toBeUndefined();
  });

  it('finds each violation at every split point of the stream that leads to it', () => {
    const bad = Buffer.concat([clientFrame({ opcode: 1, payload: 'ok' }), clientFrame({ opcode: 9, fin: false, payload: 'p' })]);
    for (let cut = 0; cut <= bad.length; cut++) {
      const { events, error } = parse([bad.subarray(0, cut), bad.subarray(cut)]);
      expect({ cut, code: error?.code, events }).toEqual({ cut, code: 1002, events: [['message', 'ok', false]] });
    }
  });

  it(`a message may take ${MAX_FRAGMENTS} frames, not one more (empty fragments add no bytes but are counted, and not kept)`, () => {
    const empty = clientFrame({ opcode: 0, fin: false });
    const build = (frames: number) => [clientFrame({ opcode: 1, fin: false, payload: 'a' }), Buffer.concat(Array.from({ length: frames - 2 }, () => empty)), clientFrame({ opcode: 0, payload: 'b' })];
    const atLimit = parse(build(MAX_FRAGMENTS));
    expect(atLimit).toMatchObject({ error: undefined, events: [['message', 'ab', false]] });
    expect(parse(build(MAX_FRAGMENTS + 1)).error).toEqual({ code: 1008, reason: 'too many fragments' });
    const sink = new Recorder();
    feedFrames(sink, Buffer.concat([clientFrame({ opcode: 1, fin: false, payload: 'a' }), empty, empty, empty]), 1024);
    expect(sink.rx?.fragments).toHaveLength(1);
    expect(sink.rx?.fragmentCount).toBe(4);
  });

  it('joins the chunks of a frame trickled in byte by byte before they pile up', () => {
    const frame = clientFrame({ opcode: 2, payload: Buffer.alloc(5000, 7) });
    const sink = new Recorder();
    let most = 0;
    for (const byte of frame) {
      expect(feedFrames(sink, Buffer.from([byte]), 10_000)).toBeUndefined();
      most = Math.max(most, sink.rx?.chunks.length ?? 0);
    }
    expect(most).toBeLessThanOrEqual(1025);
    expect(most).toBeGreaterThan(1000);
    expect(sink.events).toEqual([['message', Buffer.alloc(5000, 7).toString('hex'), true]]);
  });

  it('accepts exactly the close codes RFC 6455 §7.4 allows on the wire', () => {
    const valid = [];
    for (let code = 0; code < 6000; code++) if (isValidCloseCode(code)) valid.push(code);
    const expected = [...[1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014], ...Array.from({ length: 2000 }, (_, i) => 3000 + i)];
    expect(valid).toEqual(expected);
  });
});

describe('server frames', () => {
  it('frame as ws frames them (unmasked, FIN, shortest length)', () => {
    const { Sender } = wsModule as unknown as { Sender: { frame(data: Buffer, options: object): Buffer[] } };
    for (const [opcode, length] of [
      [1, 0],
      [2, 125],
      [1, 126],
      [10, 5],
      [1, 70_000],
    ] as const) {
      const payload = Buffer.alloc(length, 0x62);
      expect(encodeFrame(opcode, payload).equals(Buffer.concat(Sender.frame(payload, { fin: true, opcode, mask: false, readOnly: false, rsv1: false })))).toBe(true);
    }
  });

  it('close frames carry code and reason, or nothing without a code, and refuse reasons over 123 bytes', () => {
    expect([...encodeCloseFrame(undefined)]).toEqual([0x88, 0]);
    expect([...encodeCloseFrame(4100, 'over limits')]).toEqual([0x88, 13, 0x10, 0x04, ...Buffer.from('over limits')]);
    expect(() => encodeCloseFrame(1000, 'x'.repeat(124))).toThrow(RangeError);
  });
});

describe('handshake', () => {
  const headers = { upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' };

  it('answers 101 with the RFC example accept key, and replyx.v1 (never the token) when offered', () => {
    expect(acceptKey('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    const plain = answerHandshake({ method: 'GET', headers }, selectProtocol);
    expect(plain).toEqual({
      ok: true,
      protocol: undefined,
      response: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n',
    });
    const offered = answerHandshake({ method: 'GET', headers: { ...headers, 'sec-websocket-protocol': 'replyx.v1, replyx.token.a.b.c' } }, selectProtocol);
    expect(offered).toMatchObject({ ok: true, protocol: 'replyx.v1' });
    expect(offered.response).toContain('\r\nSec-WebSocket-Protocol: replyx.v1\r\n\r\n');
    expect(offered.response).not.toContain('token');
    expect(answerHandshake({ method: 'GET', headers: { ...headers, 'sec-websocket-protocol': 'other' } }, selectProtocol)).toMatchObject({ ok: true, protocol: undefined });
    // Version 8 and an offered extension (never negotiated) are accepted as before.
    expect(answerHandshake({ method: 'GET', headers: { ...headers, 'sec-websocket-version': '8', 'sec-websocket-extensions': 'permessage-deflate' } }, selectProtocol).response).not.toContain('Extensions');
  });

  it.each([
    ['POST', {}, 405, 'Invalid HTTP method'],
    ['GET', { upgrade: 'h2c' }, 400, 'Invalid Upgrade header'],
    ['GET', { upgrade: undefined }, 400, 'Invalid Upgrade header'],
    ['GET', { 'sec-websocket-key': 'short' }, 400, 'Missing or invalid Sec-WebSocket-Key header'],
    ['GET', { 'sec-websocket-key': undefined }, 400, 'Missing or invalid Sec-WebSocket-Key header'],
    ['GET', { 'sec-websocket-version': '12' }, 400, 'Missing or invalid Sec-WebSocket-Version header'],
    ['GET', { 'sec-websocket-protocol': 'a, a' }, 400, 'Invalid Sec-WebSocket-Protocol header'],
    ['GET', { 'sec-websocket-protocol': 'a,,b' }, 400, 'Invalid Sec-WebSocket-Protocol header'],
    ['GET', { 'sec-websocket-protocol': 'a b' }, 400, 'Invalid Sec-WebSocket-Protocol header'],
  ] as const)('%s with %j is refused with %i "%s", as ws refused it', (method, changed, status, message) => {
    const answer = answerHandshake({ method, headers: { ...headers, ...changed } }, selectProtocol);
    expect(answer).toMatchObject({ ok: false, status, message });
    const extra = status === 400 && message.includes('Version') ? 'Sec-WebSocket-Version: 13, 8\r\n' : '';
    const text = status === 405 ? 'Method Not Allowed' : 'Bad Request';
    expect(answer.response).toBe(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: ${message.length}\r\n${extra}\r\n${message}`);
  });

  it('parses subprotocol lists with spaces and tabs around tokens', () => {
    expect(parseProtocols('replyx.v1,\treplyx.token.x ,y')).toEqual(new Set(['replyx.v1', 'replyx.token.x', 'y']));
    expect(parseProtocols('')).toBeUndefined();
    expect(parseProtocols('a;b')).toBeUndefined();
  });
});
