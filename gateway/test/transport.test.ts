import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { openClient, transportServer, until, type TransportServer } from './ws-pair.js';

// The transport over real sockets: the close handshake both ways (echo, timeout, half-open
// peers), protocol errors as a hostile raw-TCP client causes them, pings answered with their
// payload, bytes sent right behind the handshake, and writes held back by a peer that does not
// read (bufferedAmount).

let server: TransportServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const REQUEST = `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`;

/** A masked client frame (mask key 0: the payload bytes stay readable in the test). */
function masked(opcode: number, payload: Buffer | string = '', fin = true): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  if (body.length > 125) throw new Error('test frames stay under 126 bytes');
  return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | body.length, 0, 0, 0, 0]), body]);
}

/** A raw TCP client that did the handshake (plus `extra` in the same write) and collects what it reads. */
async function rawClient(port: number, extra: Buffer = Buffer.alloc(0)): Promise<{ socket: net.Socket; received: () => Buffer; ended: Promise<void> }> {
  const socket = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.write(Buffer.concat([Buffer.from(REQUEST), extra]));
  await until(() => Buffer.concat(chunks).includes('\r\n\r\n'));
  const received = () => {
    const all = Buffer.concat(chunks);
    return all.subarray(all.indexOf('\r\n\r\n') + 4);
  };
  return { socket, received, ended };
}

describe('close handshake', () => {
  it('echoes a client close (code and reason) and reports the client code when the socket closes', async () => {
    server = await transportServer();
    const accepted = server.next();
    const client = await openClient(server.url);
    const ws = await accepted;
    const clientClosed = new Promise<[number, string]>((resolve) => client.once('close', (code, reason) => resolve([code, reason.toString()])));
    client.close(4321, 'done here');
    expect(await clientClosed).toEqual([4321, 'done here']);
    expect(await ws.closed).toBe(4321);
    expect(ws.readyState).toBe(3);
  });

  it('a server close reaches the client with code and reason; the client echo ends the TCP connection', async () => {
    server = await transportServer();
    const accepted = server.next();
    const client = await openClient(server.url);
    const ws = await accepted;
    const clientClosed = new Promise<[number, string]>((resolve) => client.once('close', (code, reason) => resolve([code, reason.toString()])));
    ws.startClose(4200, 'gateway draining');
    expect(ws.readyState).toBe(2);
    expect(ws.sendText(Buffer.from('"late"'))).toBe(false);
    expect(await clientClosed).toEqual([4200, 'gateway draining']);
    expect(await ws.closed).toBe(4200);
  });

  it('cuts a peer that never answers the close frame after the close timeout', async () => {
    server = await transportServer(1024, 150);
    const accepted = server.next();
    const raw = await rawClient(server.port);
    const ws = await accepted;
    const start = Date.now();
    ws.startClose(4101, 'slow consumer');
    await raw.ended;
    expect(Date.now() - start).toBeGreaterThanOrEqual(100);
    expect(await ws.closed).toBe(1006);
    expect([...raw.received()]).toEqual([0x88, 15, 0x10, 0x05, ...Buffer.from('slow consumer')]);
  });

  it('a client close without a code is echoed empty and reads as 1005', async () => {
    server = await transportServer();
    const accepted = server.next();
    const raw = await rawClient(server.port);
    const ws = await accepted;
    raw.socket.write(masked(0x8));
    await raw.ended;
    expect([...raw.received()]).toEqual([0x88, 0]);
    expect(await ws.closed).toBe(1005);
  });

  it('a peer that half-closes (FIN without a close frame) is closed too, as 1006', async () => {
    server = await transportServer();
    const accepted = server.next();
    const raw = await rawClient(server.port);
    const ws = await accepted;
    raw.socket.end();
    await raw.ended;
    expect(await ws.closed).toBe(1006);
  });
});

describe('what a hostile client sends', () => {
  it('an unmasked frame gets 1002 and nothing after it is read', async () => {
    server = await transportServer();
    const accepted = server.next();
    const unmasked = Buffer.from([0x81, 0x01, 0x61]);
    const raw = await rawClient(server.port, Buffer.concat([unmasked, masked(0x1, 'after')]));
    const ws = await accepted;
    await until(() => raw.received().length >= 4);
    const out = raw.received();
    expect(out[0]).toBe(0x88);
    expect(out.readUInt16BE(2)).toBe(1002);
    expect(ws.errors.map((e) => e.code)).toEqual([1002]);
    expect(ws.messages).toEqual([]);
    raw.socket.destroy();
    expect(await ws.closed).toBe(1006);
  });

  it('a frame over maxPayload gets 1009 "message too big" from its header alone', async () => {
    server = await transportServer(1024);
    const accepted = server.next();
    const raw = await rawClient(server.port, Buffer.from([0x82, 0x80 | 126, 0x04, 0x01, 0, 0, 0, 0]));
    const ws = await accepted;
    await until(() => raw.received().length >= 4);
    expect([...raw.received()]).toEqual([0x88, 17, 0x03, 0xf1, ...Buffer.from('message too big')]);
    expect(ws.errors).toEqual([{ code: 1009, reason: 'message too big' }]);
    raw.socket.destroy();
  });

  it('invalid UTF-8 in a text message gets 1007', async () => {
    server = await transportServer();
    const accepted = server.next();
    const raw = await rawClient(server.port, masked(0x1, Buffer.from([0xff, 0xfe])));
    const ws = await accepted;
    await until(() => raw.received().length >= 4);
    expect(raw.received().readUInt16BE(2)).toBe(1007);
    expect(ws.errors.map((e) => e.code)).toEqual([1007]);
    raw.socket.destroy();
  });

  it('frames sent in the handshake write and split into single bytes arrive whole; pings are answered with their payload', async () => {
    server = await transportServer();
    const accepted = server.next();
    const raw = await rawClient(server.port, masked(0x1, 'in the head'));
    const ws = await accepted;
    await until(() => ws.messages.length === 1);
    const stream = Buffer.concat([masked(0x1, 'part ', false), masked(0x9, 'beat'), masked(0x0, 'two')]);
    for (const byte of stream) {
      raw.socket.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    await until(() => ws.messages.length === 2);
    expect(ws.messages.map((m) => m.data.toString())).toEqual(['in the head', 'part two']);
    expect(ws.controls).toBe(1);
    await until(() => raw.received().length >= 6);
    expect([...raw.received()]).toEqual([0x8a, 4, ...Buffer.from('beat')]);
    raw.socket.destroy();
  });
});

describe('bufferedAmount', () => {
  it('grows while the peer does not read and returns to 0 once it does', async () => {
    server = await transportServer();
    const accepted = server.next();
    const client = await openClient(server.url);
    const ws = await accepted;
    const socket = (client as unknown as { _socket: net.Socket })._socket;
    socket.pause();
    const big = Buffer.alloc(60_000, 0x61);
    for (let i = 0; i < 100 && ws.bufferedAmount === 0; i++) {
      for (let j = 0; j < 20; j++) ws.sendText(big);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(ws.bufferedAmount).toBeGreaterThan(0);
    let received = 0;
    client.on('message', () => (received += 1));
    socket.resume();
    await until(() => ws.bufferedAmount === 0);
    expect(received).toBeGreaterThan(0);
    client.terminate();
    expect(client.readyState).not.toBe(WebSocket.OPEN);
  });
});
