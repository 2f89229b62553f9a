import { performance } from 'node:perf_hooks';

// The benchmark event and the one clock every process stamps it with. Publisher and receivers
// run on the same machine, so `timeOrigin + now()` in each process reads the same wall clock
// at sub-millisecond resolution; the difference is the publish -> receive latency.

/** Milliseconds since the epoch with sub-millisecond resolution, comparable across processes. */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The payload every system delivers: a sequence number, the publish time and some text. */
export interface BenchEventData {
  /** Sequence number of the event within one scenario run. */
  readonly s: number;
  /** Publish time, `wallClockMs()` of the publisher just before the publish call. */
  readonly t: number;
  /** Chat-message-sized filler so frames are realistic, not 20 bytes. */
  readonly text: string;
}

/** Builds the event data for sequence `s` stamped now. */
export function eventData(s: number, text: string): BenchEventData {
  return { s, t: wallClockMs(), text };
}

/** Filler text of exactly `bytes` ASCII characters (a chat message stand-in). */
export function fillerText(bytes: number): string {
  const words = 'hello could you tell me when my order ships and whether the widget works on mobile ';
  return words.repeat(Math.ceil(bytes / words.length)).slice(0, bytes);
}

/**
 * The full client frame in the gateway's event format (`{"id","type","dialog_id","data","ts"}`),
 * used by the peers so every system carries the same bytes.
 */
export function eventFrame(dialogId: number, data: BenchEventData): string {
  return JSON.stringify({ id: `${data.s}-0`, type: 'message:new', dialog_id: dialogId, data, ts: Math.floor(data.t) });
}

function numberAfter(frame: string, key: string): number | undefined {
  const at = frame.indexOf(key);
  if (at < 0) return undefined;
  const value = Number.parseFloat(frame.slice(at + key.length, at + key.length + 24));
  return Number.isFinite(value) ? value : undefined;
}

/**
 * Reads `s` and `t` out of a received frame without a full JSON.parse: receivers handle up to a
 * million frames per run and parsing would make the load generator the bottleneck. Frames that
 * are not bench events (the gateway's `connected`, pongs) give undefined.
 */
export function parseEventStamp(frame: string): { s: number; t: number } | undefined {
  const t = numberAfter(frame, '"t":');
  const s = numberAfter(frame, '"s":');
  if (t === undefined || s === undefined) return undefined;
  return { s, t };
}
