import { CONNECTION_KINDS, type ConnectionKind } from '../connection-kinds.js';

// The wire format between publishers and gateways, shared by the function library (replyx.lua), the TS publisher,
// the gateway's broker and the Python helper (docs/gateway.md, "Publishing"). Keep all four in step.

/** Redis key prefix of every key the stack writes. */
export const KEY_PREFIX = 'replyx';

/** The pub/sub channel of a dialog. */
export function dialogChannel(dialogId: number): string {
  return `${KEY_PREFIX}:dialog:${dialogId}`;
}

/** The capped history stream of a dialog (resume with `since=`). */
export function dialogStream(dialogId: number): string {
  return `${KEY_PREFIX}:dialog:${dialogId}:events`;
}

/** Longest idempotency key a publisher may pass (characters of `A-Z a-z 0-9 _ . : -`). */
export const IDEMPOTENCY_KEY_MAX_LENGTH = 200;

const IDEMPOTENCY_KEY = new RegExp(`^[A-Za-z0-9_.:-]{1,${IDEMPOTENCY_KEY_MAX_LENGTH}}$`);

/** True for an idempotency key publishers may use (a message id, a client key). */
export function isIdempotencyKey(value: string): boolean {
  return IDEMPOTENCY_KEY.test(value);
}

/** The key that remembers which event an idempotency key of a dialog published (expires after the window). */
export function dialogIdempotencyKey(dialogId: number, key: string): string {
  return `${KEY_PREFIX}:dialog:${dialogId}:idem:${key}`;
}

/** A dialog id parsed back from a channel name, or undefined for other channels. */
export function dialogIdFromChannel(channel: string): number | undefined {
  const m = /^replyx:dialog:(\d+)$/.exec(channel);
  return m ? Number(m[1]) : undefined;
}

/** An event as the broker carries it: the JSON clients receive is pre-serialised once. */
export interface BrokerEvent {
  readonly id: string;
  readonly dialogId: number;
  /** Empty = everyone on the dialog. */
  readonly audience: readonly ConnectionKind[];
  /** The exact text frame sent to clients: `{"id","type","dialog_id","data","ts"}`. */
  readonly json: string;
}

const KINDS = new Set<string>(CONNECTION_KINDS);

/** Parses an audience CSV (`""` = everyone); unknown kinds make it undefined. */
export function parseAudience(csv: string): ConnectionKind[] | undefined {
  if (csv === '') return [];
  const kinds = csv.split(',');
  return kinds.every((k) => KINDS.has(k)) ? (kinds as ConnectionKind[]) : undefined;
}

/** Decodes a channel message `<id>|<audience>|<json>`; undefined when malformed. */
export function parseBrokerMessage(dialogId: number, message: string): BrokerEvent | undefined {
  const a = message.indexOf('|');
  const b = a < 0 ? -1 : message.indexOf('|', a + 1);
  if (a <= 0 || b < 0) return undefined;
  const audience = parseAudience(message.slice(a + 1, b));
  if (!audience) return undefined;
  return { id: detachedCopy(message.slice(0, a)), dialogId, audience, json: message.slice(b + 1) };
}

/** V8 slices of 13+ characters point into their parent string; shorter ones are copies already. */
const SLICE_MIN_LENGTH = 13;

/**
 * A copy of `s` that does not keep a larger string alive. The broker remembers each dialog's
 * newest id for seconds; as a slice it would pin that event's whole message, which then
 * survives young-generation GCs and is promoted (longer GC pauses, a worse p99).
 */
export function detachedCopy(s: string): string {
  return s.length < SLICE_MIN_LENGTH ? s : Buffer.from(s, 'utf8').toString('utf8');
}

/** The frame telling a client its `since` is older than the retained history: refetch via the API. */
export const RESYNC_FRAME = '{"type":"resync"}';

/** The 4009 close reason of a resume whose `since` is newer than the dialog's newest event. */
export const SINCE_AHEAD_REASON = "since is ahead of the dialog's newest event";

/** The text frame of an event, exactly as the function library writes it (`dataJson` is JSON text). */
export function eventFrame(id: string, type: string, dialogId: number, dataJson: string, ts: number): string {
  return `{"id":"${id}","type":${JSON.stringify(type)},"dialog_id":${dialogId},"data":${dataJson},"ts":${ts}}`;
}

/** Rebuilds a history entry (stream id + fields `aud`, `body`) into a broker event. */
export function eventFromStreamEntry(dialogId: number, id: string, fields: readonly string[]): BrokerEvent | undefined {
  let aud: string | undefined;
  let body: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'aud') aud = fields[i + 1];
    else if (fields[i] === 'body') body = fields[i + 1];
  }
  if (aud === undefined || body === undefined) return undefined;
  const audience = parseAudience(aud);
  if (!audience) return undefined;
  return { id, dialogId, audience, json: `{"id":"${id}",${body}}` };
}

/** Compares two stream ids (`<ms>-<seq>`): negative, zero or positive like a sort comparator. */
export function compareEventIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  return compareDigits(am, bm) || compareDigits(as, bs);
}

// Both parts may exceed 2^53, so they are compared as digit strings (no leading zeros in ids Redis makes).
function compareDigits(a: string, b: string): number {
  const x = a.replace(/^0+(?=\d)/, '');
  const y = b.replace(/^0+(?=\d)/, '');
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The largest part of a stream id: Redis keeps both `<ms>` and `<seq>` as unsigned 64-bit integers. */
export const EVENT_ID_PART_MAX = '18446744073709551615';

/** Why `value` is not a stream id (`<ms>-<seq>`, each part digits ≤ 2^64-1), or undefined when it is one. */
export function eventIdProblem(value: string): string | undefined {
  const m = /^(\d{1,20})-(\d{1,20})$/.exec(value);
  if (!m) return 'since must be an event id such as 1732780000000-0';
  if (compareDigits(m[1]!, EVENT_ID_PART_MAX) > 0 || compareDigits(m[2]!, EVENT_ID_PART_MAX) > 0) return `since has a part above ${EVENT_ID_PART_MAX} (2^64-1)`;
  return undefined;
}

/** True for a well-formed stream id such as `1732780000000-0`, both parts within 2^64-1. */
export function isEventId(value: string): boolean {
  return eventIdProblem(value) === undefined;
}

/** The `ts` of an event frame (the broker's JSON ends with `,"ts":<ms>}`), read without parsing. */
export function eventTs(json: string): number | undefined {
  const at = json.lastIndexOf('"ts":');
  if (at < 0) return undefined;
  const n = Number.parseInt(json.slice(at + 5), 10);
  return Number.isFinite(n) ? n : undefined;
}

const TYPE_PREFIX = /^\{"id":"[^"]*","type":("(?:[^"\\]|\\.)*")/;

/** The `type` of an event frame, read from its fixed prefix without parsing the data. */
export function eventType(json: string): string {
  const m = TYPE_PREFIX.exec(json);
  if (!m) return '?';
  try {
    return JSON.parse(m[1]!) as string;
  } catch {
    return '?';
  }
}
