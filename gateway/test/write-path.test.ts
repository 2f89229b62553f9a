import { afterEach, describe, expect, it } from 'vitest';
import * as wsModule from 'ws';
import { encodeTextFrame, writeEncodedFrame, type CorkState } from '../src/connection/frame-writer.js';
import { HEARTBEAT_TICK_MS, HeartbeatWheel, MAX_HEARTBEAT_SLICES, heartbeatSlices } from '../src/connection/heartbeat-wheel.js';
import { openClient, transportServer, until, type RecordingWebSocket, type TransportServer } from './ws-pair.js';

// The broadcast write path (frame once, cork per tick) and the heartbeat wheel.

describe('encodeTextFrame', () => {
  const cases: [number, number][] = [
    [0, 2],
    [1, 2],
    [125, 2],
    [126, 4],
    [65_535, 4],
    [65_536, 10],
    [200_000, 10],
  ];
  it.each(cases)('a %i-byte payload gets a FIN text header of %i bytes and the payload unmasked', (length, header) => {
    const payload = Buffer.alloc(length, 0x61);
    const frame = encodeTextFrame(payload.toString());
    expect(frame.length).toBe(header + length);
    expect(frame[0]).toBe(0x81); // FIN + text opcode, no RSV1 (uncompressed)
    expect(frame[1]! & 0x80).toBe(0); // server frames are never masked
    const declared = header === 2 ? frame[1]! : header === 4 ? frame.readUInt16BE(2) : Number(frame.readBigUInt64BE(2));
    expect(declared).toBe(length);
    expect(frame.subarray(header).equals(payload)).toBe(true);
  });
});

describe('encodeTextFrame and ws agree', () => {
  it.each([0, 5, 125, 126, 300, 65_535, 65_536, 70_000])('a %i-byte payload frames exactly as ws.send would', (length) => {
    const text = 'é'.repeat(Math.floor(length / 2)) + 'x'.repeat(length % 2); // multi-byte UTF-8 counts in bytes
    // ws's own framing (its Sender, undeclared in @types/ws) is the reference.
    const { Sender } = wsModule as unknown as { Sender: { frame(data: Buffer, options: object): Buffer[] } };
    const viaWs = Buffer.concat(Sender.frame(Buffer.from(text), { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false }));
    expect(encodeTextFrame(text).equals(viaWs)).toBe(true);
  });
});

describe('writeEncodedFrame', () => {
  let server: TransportServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  /** A transport server on port 0 whose one ws client counts TCP reads and collects messages. */
  async function pair(): Promise<{ serverSide: RecordingWebSocket; messages: string[]; pings: Buffer[]; reads: () => number; close: () => void }> {
    server = await transportServer();
    const accepted = server.next();
    const client = await openClient(server.url);
    const serverSide = await accepted;
    let reads = 0;
    (client as unknown as { _socket: NodeJS.ReadableStream })._socket.on('data', () => (reads += 1));
    const messages: string[] = [];
    client.on('message', (data: Buffer) => messages.push(data.toString()));
    const pings: Buffer[] = [];
    client.on('ping', (data: Buffer) => pings.push(data));
    return { serverSide, messages, pings, reads: () => reads, close: () => client.terminate() };
  }

  it('frames written in one tick reach the client intact, in order, in one batch', async () => {
    const p = await pair();
    const state: CorkState = { writeBatch: -1 };
    const sent = Array.from({ length: 200 }, (_, i) => JSON.stringify({ type: 'message:new', seq: i }));
    for (const text of sent) writeEncodedFrame(p.serverSide.socket, encodeTextFrame(text), state);
    // The first frame left at once; the other 199 wait, corked, until the tick ends.
    expect(p.serverSide.bufferedAmount).toBeGreaterThan(199 * sent[1]!.length);
    await until(() => p.messages.length === sent.length);
    expect(p.messages).toEqual(sent);
    // 200 frames of ~30 bytes leave in two writes; without the cork they are 200 writes.
    expect(p.reads()).toBeLessThanOrEqual(3);
    p.close();
  });

  it('uncorks at the end of the tick: frames written in later ticks are delivered too', async () => {
    const p = await pair();
    const state: CorkState = { writeBatch: -1 };
    for (let i = 0; i < 5; i++) {
      writeEncodedFrame(p.serverSide.socket, encodeTextFrame(`"tick ${i}"`), state);
      // A lone frame in its tick is written at once, not corked.
      expect(p.serverSide.bufferedAmount).toBe(0);
      await until(() => p.messages.length === i + 1);
    }
    expect(p.messages).toEqual([0, 1, 2, 3, 4].map((i) => `"tick ${i}"`));
    p.close();
  });

  it('ping() sends an empty protocol ping that the client answers, in order with corked frames', async () => {
    const p = await pair();
    p.serverSide.ping();
    p.serverSide.ping();
    await until(() => p.serverSide.controls === 2);
    expect(p.pings.map((d) => d.length)).toEqual([0, 0]);
    // A ping between corked event frames leaves in order with them and disturbs none.
    const state: CorkState = { writeBatch: -1 };
    writeEncodedFrame(p.serverSide.socket, encodeTextFrame('"a"'), state);
    writeEncodedFrame(p.serverSide.socket, encodeTextFrame('"b"'), state);
    p.serverSide.ping();
    writeEncodedFrame(p.serverSide.socket, encodeTextFrame('"c"'), state);
    await until(() => p.messages.length === 3 && p.serverSide.controls === 3);
    expect(p.messages).toEqual(['"a"', '"b"', '"c"']);
    // No frame may follow a close frame: a closing socket is not pinged.
    p.serverSide.startClose(1000);
    p.serverSide.ping();
    await new Promise((r) => setTimeout(r, 50));
    expect(p.pings).toHaveLength(3);
    p.close();
  });

  it('interleaves with sendText in call order', async () => {
    const p = await pair();
    const state: CorkState = { writeBatch: -1 };
    writeEncodedFrame(p.serverSide.socket, encodeTextFrame('"a"'), state);
    p.serverSide.sendText(Buffer.from('"b"'));
    writeEncodedFrame(p.serverSide.socket, encodeTextFrame('"c"'), state);
    await until(() => p.messages.length === 3);
    expect(p.messages).toEqual(['"a"', '"b"', '"c"']);
    p.close();
  });
});

describe('HeartbeatWheel', () => {
  const conn = (id: number) => ({ id });

  it('cuts the interval into ~100 ms ticks, within [1, MAX_HEARTBEAT_SLICES]', () => {
    expect(heartbeatSlices(25_000)).toBe(25_000 / HEARTBEAT_TICK_MS);
    expect(heartbeatSlices(30_000)).toBe(300);
    expect(heartbeatSlices(50)).toBe(1);
    expect(heartbeatSlices(1)).toBe(1);
    expect(heartbeatSlices(3_600_000)).toBe(MAX_HEARTBEAT_SLICES);
  });

  it('returns every connection exactly once per round of slices', () => {
    const wheel = new HeartbeatWheel<{ id: number }>(7);
    const all = Array.from({ length: 100 }, (_, i) => conn(i + 1));
    for (const c of all) wheel.add(c);
    wheel.add(all[0]!); // adding twice does not count twice
    expect(wheel.size).toBe(100);
    for (let round = 0; round < 2; round++) {
      const seen: number[] = [];
      for (let i = 0; i < wheel.slices; i++) {
        const slice = wheel.nextSlice();
        expect(slice.length).toBeLessThanOrEqual(Math.ceil(100 / 7));
        seen.push(...slice.map((c) => c.id));
      }
      expect(seen.sort((a, b) => a - b)).toEqual(all.map((c) => c.id));
    }
  });

  it('forgets deleted connections, also while a slice is being walked', () => {
    const wheel = new HeartbeatWheel<{ id: number }>(2);
    const a = conn(2);
    const b = conn(4);
    const c = conn(3);
    for (const x of [a, b, c]) wheel.add(x);
    const slice = wheel.nextSlice(); // ids 2 and 4
    for (const x of slice) wheel.delete(x);
    expect(slice.map((x) => x.id)).toEqual([2, 4]);
    expect(wheel.delete(a)).toBe(false);
    expect(wheel.size).toBe(1);
    expect([...wheel]).toEqual([c]);
    expect(wheel.nextSlice()).toEqual([c]);
    expect(wheel.nextSlice()).toEqual([]);
  });

  it('refuses a non-positive slice count', () => {
    expect(() => new HeartbeatWheel(0)).toThrow(/slices must be a positive integer, got 0/);
    expect(() => new HeartbeatWheel(1.5)).toThrow(RangeError);
  });
});
