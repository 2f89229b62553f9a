import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { idleRound, median, startWsUpstream, type WsUpstream } from './nginx-ws-rig.js';

let upstream: WsUpstream;
beforeAll(async () => {
  upstream = await startWsUpstream();
});
afterAll(async () => {
  await upstream?.close();
});

describe('nginx micro-benchmark rig', () => {
  it('takes the median (upper middle for an even count)', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(3);
  });

  it('opens the warm-up and measured sockets through one nginx worker to the upstream, then stops nginx', async () => {
    const seen = await idleRound(
      { upstreamPort: upstream.port, settings: { wsProxyBufferBytes: 2048 }, path: '/ws/dialogs/1', protocols: ['replyx.v1', 'replyx.token.abc'], headers: { Origin: 'https://shop.example.com' }, connections: 30, settleMs: { warm: 50, measured: 50 } },
      ({ kibPerConn, sockets, pids }) => {
        expect(Number.isFinite(kibPerConn)).toBe(true);
        // 200 warm-up sockets, then the measured ones; each got the upstream's greeting through nginx.
        expect(sockets).toHaveLength(230);
        expect(sockets.every((s) => s.readyState === WebSocket.OPEN && s.protocol === 'replyx.v1')).toBe(true);
        expect(upstream.server.clients.size).toBe(230);
        // The master and its single worker.
        expect(pids).toHaveLength(2);
        return pids;
      },
    );
    for (const pid of seen) expect(existsSync(`/proc/${pid}`)).toBe(false);
  });
});
