// Event ids are Redis stream ids `<ms>-<seq>`, both parts unbounded decimal numbers. They are
// compared as numbers without converting to Number (a 20-digit part would lose precision):
// a longer digit string is larger, equal lengths compare lexically. The gateway orders ids the
// same way (gateway/src/broker/protocol.ts); a test checks that both agree.

const EVENT_ID = /^\d{1,20}-\d{1,20}$/;

/** True for a well-formed event id such as `1732780000000-0`. */
export function isEventId(value: unknown): value is string {
  return typeof value === 'string' && EVENT_ID.test(value);
}

function compareDigits(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Orders two event ids like a sort comparator: negative, zero or positive. */
export function compareEventIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  return compareDigits(am, bm) || compareDigits(as, bs);
}
