import { appendFileSync } from 'node:fs';
import { afterAll, beforeAll, it } from 'vitest';
import { readPid } from '../../infra/targets/local/supervisor.js';
import { watchdogPidFile } from '../../infra/targets/local/watchdog.js';
import { startDrill, type Drill } from './drill.js';

let drill: Drill;
const out = (s: string) => appendFileSync('/tmp/explore.txt', `${s}\n`);
beforeAll(async () => {
  drill = await startDrill({ patch: (doc) => { doc.setIn(['config', 'replyx:monitoring', 'enabled'], false); doc.setIn(['config', 'replyx:backend', 'workers'], 2); } });
}, 300_000);
afterAll(async () => drill?.stop(), 120_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function run(cmds: string[]) {
  for (const c of cmds) {
    const t0 = Date.now();
    const s = await drill.sh(c);
    out(`\n$ ${c}   [exit ${s.code}, ${Date.now() - t0} ms]\n${s.out}\n${s.err}`);
  }
}
const diag = ['npm run -s stack -- status', 'npm run check', 'npm run health', 'tail -n 5 "$REPLYX_STATE_DIR/logs/watchdog.log"', 'tail -n 3 "$REPLYX_STATE_DIR/logs/gateway.log"', `grep '"kind":"ws"' "$REPLYX_STATE_DIR/nginx/logs/access.log" | tail -n 3`, 'tail -n 3 "$REPLYX_STATE_DIR/logs/backend.log"'];
it('explore', async () => {
  const h = drill.run.stack.handle;
  const pidOf = async (n: string) => (await readPid(h.plan.services.find((s) => s.name === n)!.pidFile))!;
  const stopWd = async () => { const wd = await readPid(watchdogPidFile(h.dir)); if (wd) process.kill(wd, 'SIGKILL'); };
  out('===== A gateway SIGKILL, watchdog on');
  process.kill(await pidOf('gateway'), 'SIGKILL');
  await sleep(6000);
  await run(diag);
  out('===== B gateway SIGKILL, watchdog off');
  await stopWd();
  process.kill(await pidOf('gateway'), 'SIGKILL');
  await sleep(4000);
  await run(diag);
  await run(['npm start']);
  out('===== C gateway SIGSTOP');
  await sleep(3000);
  process.kill(await pidOf('gateway'), 'SIGSTOP');
  await sleep(8000);
  await run(diag);
  await run(['npm run stack -- restart gateway']);
  await sleep(3000);
  out('===== D redis SIGKILL, watchdog off');
  await stopWd();
  process.kill(await pidOf('redis'), 'SIGKILL');
  await sleep(4000);
  await run([...diag, 'curl -s -m 3 "http://127.0.0.1:$REPLYX_GATEWAY_PORT/health"', 'curl -s -m 3 "http://127.0.0.1:$REPLYX_BACKEND_PORT/health"']);
  await run(['npm start']);
  await sleep(5000);
  out('===== E postgres SIGKILL, watchdog off');
  await stopWd();
  process.kill(await pidOf('postgres'), 'SIGKILL');
  await sleep(4000);
  await run([...diag, 'curl -s -m 3 "http://127.0.0.1:$REPLYX_GATEWAY_PORT/health"', 'curl -s -m 3 "http://127.0.0.1:$REPLYX_BACKEND_PORT/health"', `grep '"kind":"http"' "$REPLYX_STATE_DIR/nginx/logs/access.log" | tail -n 3`]);
  await run(['npm start']);
  await sleep(3000);
  await run(diag.slice(0, 3));
}, 900_000);
