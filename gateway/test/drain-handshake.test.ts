import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedRedisUrl } from '../../test/services.js';
import { TestClient, adminToken, createAccessDatabase, eventually, startGateway, testConfig, type AccessDatabase, type TestGateway } from './harness.js';

// Handshakes that reach a gateway while it drains (sent before the proxy stopped routing to it):
// each still proves who it is, and only then is told to reconnect elsewhere (4200).

let db: AccessDatabase;
let gw: TestGateway;

beforeAll(async () => {
  db = await createAccessDatabase();
  gw = await startGateway(testConfig({ databaseUrl: db.url, broker: 'redis', redisUrl: sharedRedisUrl() }));
});

afterAll(async () => {
  await gw?.stop();
});

const adminUrl = (dialog: number, token: string) => `${gw.ws}/ws/dialogs/${dialog}?token=${encodeURIComponent(token)}`;

describe('a handshake during the drain', () => {
  it('is authorized first: a valid one gets 4200 without a connected frame, a bad token 4001, a foreign dialog 4004', async () => {
    const dialog = db.a.dialogs[0]!;
    // One client attached, so the drain spreads its 4200s over the window and the gateway listens meanwhile.
    const attached = new TestClient(adminUrl(dialog, await adminToken(db.a.userId)));
    await attached.ready();
    const drained = gw.gateway.drain(3000);
    await eventually(() => gw.logs.some((l) => /drain/i.test(l)), 2000, 'the drain started');

    const late = new TestClient(adminUrl(dialog, await adminToken(db.a.userId)));
    const forged = new TestClient(adminUrl(dialog, await adminToken(db.a.userId, { secret: 'not-the-gateway-secret-0123456789abcdef' })));
    const foreign = new TestClient(adminUrl(db.b.dialogs[0]!, await adminToken(db.a.userId)));
    expect((await late.closed).code).toBe(4200);
    expect((await forged.closed).code).toBe(4001);
    expect((await foreign.closed).code).toBe(4004);
    for (const c of [late, forged, foreign]) expect(c.frames.filter((f) => f.json.type === 'connected')).toHaveLength(0);
    expect((await attached.closed).code).toBe(4200);
    await drained;
  }, 20_000);
});
