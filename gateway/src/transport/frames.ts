import { Opcode } from './frame-parser.js';

// Server frames (RFC 6455 §5.2): never masked, never fragmented, never compressed. Each frame is
// one Buffer, header and payload together, so a write is one chunk.

/** FIN bit of the first header byte. */
const FIN = 0x80;

/** Header bytes for an unmasked payload of `length` bytes (7-, 16- or 64-bit length). */
export function headerLength(length: number): number {
  return length < 126 ? 2 : length < 65_536 ? 4 : 10;
}

/** Writes a FIN header for `opcode` and `length` at the start of `frame`; returns its length. */
export function writeHeader(frame: Buffer, opcode: number, length: number): number {
  frame[0] = FIN | opcode;
  const header = headerLength(length);
  if (header === 2) {
    frame[1] = length;
  } else if (header === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  return header;
}

/** One final frame of `opcode` carrying `payload` (copied after the header). */
export function encodeFrame(opcode: number, payload: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(headerLength(payload.length) + payload.length);
  payload.copy(frame, writeHeader(frame, opcode, payload.length));
  return frame;
}

/** A ping or pong (payload ≤ 125 bytes, checked by the caller: pongs echo a parsed ping). */
export function encodeControlFrame(opcode: typeof Opcode.PING | typeof Opcode.PONG, payload: Buffer): Buffer {
  return encodeFrame(opcode, payload);
}

/** A close frame: empty without a code, else the code and the UTF-8 reason (≤ 123 bytes). */
export function encodeCloseFrame(code: number | undefined, reason = ''): Buffer {
  if (code === undefined) return Buffer.from([FIN | Opcode.CLOSE, 0]);
  const length = 2 + Buffer.byteLength(reason);
  if (length > 125) throw new RangeError(`close reason longer than 123 bytes: ${JSON.stringify(reason)}`);
  const frame = Buffer.allocUnsafe(2 + length);
  frame[0] = FIN | Opcode.CLOSE;
  frame[1] = length;
  frame.writeUInt16BE(code, 2);
  frame.write(reason, 4, 'utf8');
  return frame;
}

/** An empty ping: the same two bytes for every socket the heartbeat pings. */
export const PING_FRAME = Buffer.from([FIN | Opcode.PING, 0x00]);
