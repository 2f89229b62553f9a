// The offered load of the reliability suite and the reconnect-storm benchmark: sends paced by the
// clock, not by answers, so a slow or failing server does not slow what it is offered (a
// closed loop would hide an outage by sending less during it).

/** A running paced loop. */
export interface PacedLoop {
  /** Sends started and not yet settled. */
  inFlight(): number;
  /** Starts no further send; resolves once every send in flight has settled. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Calls `send(seq)` for seq 0, 1, 2, … at `ratePerS` a second on the clock, until stopped. */
export function pacedLoop(ratePerS: number, send: (seq: number) => Promise<unknown>): PacedLoop {
  if (!(ratePerS > 0) || !Number.isFinite(ratePerS)) throw new RangeError(`pacedLoop: ratePerS must be a positive number, got ${ratePerS}`);
  const inFlight = new Set<Promise<unknown>>();
  let running = true;
  const loop = (async () => {
    const t0 = Date.now();
    for (let seq = 0; running; seq += 1) {
      const due = t0 + (seq * 1000) / ratePerS;
      if (due > Date.now()) await sleep(due - Date.now());
      if (!running) break;
      // A send that throws at once counts as settled: the loop keeps its pace either way.
      const p = Promise.resolve()
        .then(() => send(seq))
        .catch(() => undefined)
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
  })();
  return {
    inFlight: () => inFlight.size,
    async stop() {
      running = false;
      await loop;
      await Promise.allSettled([...inFlight]);
    },
  };
}
