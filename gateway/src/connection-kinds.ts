// The seed's three kinds of client. A leaf module: the broker (audiences), the hub (membership),
// the endpoints and the metrics all name kinds, so none of them has to import another for it.

/** Who a connection is: the seed's three clients. */
export type ConnectionKind = 'admin' | 'widget' | 'site';

/** Every connection kind, in delivery order. */
export const CONNECTION_KINDS: readonly ConnectionKind[] = ['admin', 'widget', 'site'];

/** Per-kind connection counts. */
export type KindCounts = Record<ConnectionKind, number>;

/** The log tag of a connection kind, as the seed greps for it (the backend's legacy mode logs it too). */
export const LOG_TAG: Readonly<Record<ConnectionKind, string>> = { admin: '[Admin]', widget: '[Widget]', site: '[Site]' };
