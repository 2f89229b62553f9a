// Admission limits: connections in total and per client address, and handshakes per address
// per second. Counters are plain maps kept bounded: per-IP entries go when they reach zero,
// handshake windows are swept by the gateway's shared interval.

/** The admission limits (defaults in config.ts). */
export interface AdmissionLimits {
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  readonly handshakesPerIpPerSecond: number;
  /** Most addresses tracked for the handshake rate before an early sweep. Default 100000. */
  readonly maxTrackedAddresses?: number;
}

/** Why a connection was refused. */
export type AdmissionRefusal = 'handshake-rate' | 'max-connections' | 'max-connections-per-ip';

/** Counts connections and handshakes; O(1) per call. */
export class Admission {
  readonly #limits: AdmissionLimits;
  readonly #perIp = new Map<string, number>();
  readonly #handshakes = new Map<string, { windowStart: number; count: number }>();
  readonly #maxTracked: number;
  #total = 0;

  /** Creates counters for the given limits. */
  constructor(limits: AdmissionLimits) {
    this.#limits = limits;
    this.#maxTracked = limits.maxTrackedAddresses ?? 100_000;
  }

  /** Records a handshake and reserves a connection slot; returns the refusal, if any. */
  admit(ip: string, now = Date.now()): AdmissionRefusal | undefined {
    let window = this.#handshakes.get(ip);
    if (!window || now - window.windowStart >= 1000) {
      if (!window && this.#handshakes.size >= this.#maxTracked) this.sweep(now);
      window = { windowStart: now, count: 0 };
      this.#handshakes.set(ip, window);
    }
    window.count += 1;
    if (window.count > this.#limits.handshakesPerIpPerSecond) return 'handshake-rate';
    if (this.#total >= this.#limits.maxConnections) return 'max-connections';
    const mine = this.#perIp.get(ip) ?? 0;
    if (mine >= this.#limits.maxConnectionsPerIp) return 'max-connections-per-ip';
    this.#perIp.set(ip, mine + 1);
    this.#total += 1;
    return undefined;
  }

  /** Releases a slot reserved by a successful admit(). */
  release(ip: string): void {
    const mine = this.#perIp.get(ip);
    if (mine === undefined) return;
    if (mine <= 1) this.#perIp.delete(ip);
    else this.#perIp.set(ip, mine - 1);
    this.#total -= 1;
  }

  /** Forgets handshake windows that have ended. */
  sweep(now = Date.now()): void {
    for (const [ip, w] of this.#handshakes) if (now - w.windowStart >= 1000) this.#handshakes.delete(ip);
  }

  /** Connection slots in use. */
  get total(): number {
    return this.#total;
  }

  /** Addresses with at least one connection. */
  get addresses(): number {
    return this.#perIp.size;
  }

  /** Addresses with a live handshake window. */
  get trackedHandshakeWindows(): number {
    return this.#handshakes.size;
  }
}
