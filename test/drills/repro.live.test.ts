import { afterAll, beforeAll, expect, it } from 'vitest';
import { readPid } from '../../infra/targets/local/supervisor.js';
import { watchdogPidFile } from '../../infra/targets/local/watchdog.js';
import { startDrill, type Drill } from './drill.js';

let drill: Drill;
beforeAll(async () => {
  drill = await startDrill({ patch: (doc) => { doc.setIn(['config', 'replyx:monitoring', 'enabled'], false); doc.setIn(['config', 'replyx:backend', 'workers'], 2); } });
}, 300_000);
afterAll(async () => drill?.stop(), 120_000);

it('gateway killed, stays down', async () => {
  const h = drill.run.stack.handle;
  const r = await drill.incident('repro stays down', async () => {
    const wd = await readPid(watchdogPidFile(h.dir));
    if (wd) process.kill(wd, 'SIGTERM');
    const gw = await readPid(h.plan.services.find((s) => s.name === 'gateway')!.pidFile);
    process.kill(gw!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 20_000));
    const s = await drill.sh('npm run -s stack -- status || true');
    console.log(s.out, s.err);
    const x = await drill.sh('npm run stack -- restart gateway');
    console.log(x.code, x.out, x.err);
  });
  console.log(JSON.stringify({ ...r, examples: r.examples }, null, 1));
  expect(r.missing).toBe(0);
}, 600_000);
