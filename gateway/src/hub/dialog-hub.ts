import { CONNECTION_KINDS, type ConnectionKind, type KindCounts } from '../connection-kinds.js';

// The membership map: which local connections are attached to which dialog, by connection type.
// It knows nothing of sockets or Redis, so the gateway's delivery hub (delivery-hub.ts) and the
// backend's legacy mode share it.

/** What the hub needs of a connection. */
export interface HubMember {
  readonly kind: ConnectionKind;
}

const zeroCounts = (): KindCounts => ({ admin: 0, widget: 0, site: 0 });

/** Dialog id → connections by kind. Join/leave are O(1); nothing stays behind once empty. */
export class DialogHub<M extends HubMember = HubMember> {
  readonly #dialogs = new Map<number, Map<ConnectionKind, Set<M>>>();
  #size = 0;
  readonly #byKind = zeroCounts();

  /** Attaches `member` to a dialog; returns true when it is the dialog's first local member. */
  join(dialogId: number, member: M): boolean {
    let kinds = this.#dialogs.get(dialogId);
    const first = kinds === undefined;
    if (!kinds) {
      kinds = new Map();
      this.#dialogs.set(dialogId, kinds);
    }
    let set = kinds.get(member.kind);
    if (!set) {
      set = new Set();
      kinds.set(member.kind, set);
    }
    if (!set.has(member)) {
      set.add(member);
      this.#size += 1;
      this.#byKind[member.kind] += 1;
    }
    return first;
  }

  /** Detaches `member`; returns true when the dialog has no local members left. */
  leave(dialogId: number, member: M): boolean {
    const kinds = this.#dialogs.get(dialogId);
    const set = kinds?.get(member.kind);
    if (!kinds || !set?.delete(member)) return false;
    this.#size -= 1;
    this.#byKind[member.kind] -= 1;
    if (set.size === 0) kinds.delete(member.kind);
    if (kinds.size === 0) {
      this.#dialogs.delete(dialogId);
      return true;
    }
    return false;
  }

  /** Members of a dialog, narrowed to an audience (all kinds when `audience` is empty). */
  *recipients(dialogId: number, audience?: readonly ConnectionKind[]): Generator<M> {
    const kinds = this.#dialogs.get(dialogId);
    if (!kinds) return;
    for (const kind of audience && audience.length > 0 ? audience : CONNECTION_KINDS) {
      const set = kinds.get(kind);
      if (set) yield* set;
    }
  }

  /** Connection counts of one dialog by kind. */
  dialogCounts(dialogId: number): KindCounts {
    const counts = zeroCounts();
    for (const [kind, set] of this.#dialogs.get(dialogId) ?? []) counts[kind] = set.size;
    return counts;
  }

  /** True when the dialog has at least one local member. */
  has(dialogId: number): boolean {
    return this.#dialogs.has(dialogId);
  }

  /** Ids of dialogs with local members. */
  dialogIds(): number[] {
    return [...this.#dialogs.keys()];
  }

  /** Total members. */
  get size(): number {
    return this.#size;
  }

  /** Number of dialogs with members. */
  get dialogCount(): number {
    return this.#dialogs.size;
  }

  /** Members by kind across all dialogs. */
  counts(): KindCounts {
    return { ...this.#byKind };
  }
}
