import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signAdminToken } from '../../examples/backend/src/demo.js';
import { tokenProtocols } from '../../gateway/src/auth/credentials.js';
import { wsFirstFrame } from '../../infra/operate/probes.js';
import { expectNothingLost, startDrill, type Drill, type Step } from './drill.js';

// Deploy and rollback drills (runbooks/deploy.md, runbooks/rollback.md) on one live local stack
// under traffic: each planned change is made the way the runbook says (`npm run stack -- set`),
// then the runbook's Diagnosis, Action and Verification fences are pasted as they are. The
// drills prove that `npm start` on a running stack applies the change for real (the running
// gateway sends the new heartbeat, the backend runs the new worker count, /ws/ is served by the
// route the file names) and that a rollback is one command each way, with what clients lose
// scored like a reliability fault and the /api/ 502 window of each backend restart measured.

let drill: Drill;
let adminToken = '';

beforeAll(async () => {
  drill = await startDrill();
  adminToken = await signAdminToken(drill.run.stack.handle.secrets.jwtSecret, 1, 3600);
}, 300_000);

afterAll(async () => {
  await drill?.stop();
}, 180_000);

/** The `connected` frame a client gets through nginx now: who serves /ws/ and its heartbeat. */
async function connectedFrame(): Promise<{ server?: string; heartbeat_ms?: number }> {
  const r = await wsFirstFrame(`ws://127.0.0.1:${drill.run.stack.handle.ports.nginx}/ws/dialogs/123`, {}, 5000, tokenProtocols(adminToken));
  if (!r.ok) throw new Error(`no connected frame through nginx: ${r.error}`);
  return r.value as { server?: string; heartbeat_ms?: number };
}

/**
 * Polls /api/ through nginx every 100 ms while `body` runs, as a client would, and measures how
 * long nginx answered 502 (no backend listening): the window a backend restart costs /api/.
 */
async function measure502<T>(body: () => Promise<T>): Promise<{ value: T; windowMs: number; count: number }> {
  const url = `http://127.0.0.1:${drill.run.stack.handle.ports.nginx}/api/dialogs/123/messages?limit=1`;
  const bad: number[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const t = Date.now();
      const status = await fetch(url, { headers: { authorization: `Bearer ${adminToken}` }, signal: AbortSignal.timeout(5000) }).then(
        async (res) => (await res.arrayBuffer(), res.status),
        () => 0,
      );
      if (status === 502) bad.push(t);
      await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - t))));
    }
  })();
  try {
    const value = await body();
    return { value, windowMs: bad.length === 0 ? 0 : bad.at(-1)! - bad[0]! + 100, count: bad.length };
  } finally {
    polling = false;
    await poller;
  }
}

/** Runs one command the operator types, which must succeed. */
async function sh(command: string): Promise<Step> {
  const step = await drill.sh(command);
  expect(step.code, `${command}\n${step.out.slice(-1500)}\n${step.err.slice(-1500)}`).toBe(0);
  return step;
}

/** Follows deploy.md for a change already written to the stack file: pre-check, npm start, verification. */
async function followDeploy(): Promise<{ diagnosis: string; action: string; verification: string }> {
  const diagnosis = (await drill.follow('deploy', 'Diagnosis')).text;
  const action = (await drill.follow('deploy', 'Action')).text;
  const verification = (await drill.follow('deploy', 'Verification')).text;
  return { diagnosis, action, verification };
}

describe('deploy and rollback drills (runbooks/deploy.md, runbooks/rollback.md)', () => {
  it('deploy gateway.heartbeatMs 25000 -> 20000: npm start restarts the gateway, the new heartbeat is live', async () => {
    expect((await connectedFrame()).heartbeat_ms).toBe(25_000);
    let d = { diagnosis: '', action: '', verification: '' };
    const r = await drill.incident('deploy gateway.heartbeatMs 25000->20000', async () => {
      await sh('npm run stack -- set gateway.heartbeatMs 20000');
      d = await followDeploy();
    });
    expect(d.diagnosis).toMatch(/heartbeat-vs-timeouts\s+stack-file\s+PASS\s+heartbeat 20 s/);
    expect(d.action).toMatch(/nginx reloaded/);
    expect(d.action).toMatch(/gateway restarted \(pid \d+\): it ran with other HEARTBEAT_MS/);
    expect(d.action).toMatch(/verified live: .*heartbeat 20000 ms/);
    expect(d.action).not.toMatch(/backend restarted/);
    // What npm start printed (docs/operations.md shows it).
    console.log(d.action);
    expect(d.verification).toMatch(/service-settings\s+running\s+PASS/);
    expect((await connectedFrame()).heartbeat_ms).toBe(20_000);
    expectNothingLost(r);
  }, 600_000);

  it('deploy backend.workers 4 -> 2: the backend restarts once with 2 workers; /api/ 502 window measured', async () => {
    let d = { diagnosis: '', action: '', verification: '' };
    const m = await measure502(() =>
      drill.incident('deploy backend.workers 4->2', async () => {
        await sh('npm run stack -- set backend.workers 2');
        d = await followDeploy();
      }),
    );
    expect(d.action).toMatch(/restart backend .*pid \d+, 2 workers/);
    expect(d.action).toMatch(/verified live: .*backend 2 workers/);
    expect(d.action).not.toMatch(/gateway restarted/);
    expect(d.verification).toMatch(/backend-workers\s+running\s+PASS\s+2 workers/);
    console.log(`deploy backend.workers 4->2: /api/ 502 for ${m.windowMs} ms (${m.count} polls)`);
    expect(m.windowMs).toBeLessThan(30_000);
    expectNothingLost(m.value);
  }, 600_000);

  it('deploy wsRoute backend (with backend.workers 1): workers first, then /ws/; and back to the gateway with 4 workers', async () => {
    let d = { diagnosis: '', action: '', verification: '' };
    const toBackend = await measure502(() =>
      drill.incident('deploy wsRoute gateway->backend, workers 2->1', async () => {
        await sh('npm run stack -- set wsRoute backend backend.workers 1');
        d = await followDeploy();
      }),
    );
    expect(d.diagnosis).toMatch(/desync-risk\s+stack-file\s+PASS/);
    // Never /ws/ on a multi-worker backend: the backend restarts before nginx is reloaded.
    expect(d.action).toMatch(/restart backend[\s\S]*reload[\s\S]*drain/);
    expect(d.action).toMatch(/verified live: \/ws\/ served by the backend, backend 1 worker/);
    expect(d.verification).toMatch(/via backend/);
    expect((await connectedFrame()).server).toBe('backend');
    expectNothingLost(toBackend.value);

    const back = await measure502(() =>
      drill.incident('deploy wsRoute backend->gateway, workers 1->4', async () => {
        await sh('npm run stack -- set wsRoute gateway backend.workers 4');
        d = await followDeploy();
      }),
    );
    expect(d.action).toMatch(/reload[\s\S]*restart backend .*4 workers/);
    expect(d.action).toMatch(/verified live: \/ws\/ served by the gateway \(heartbeat 20000 ms\), backend 4 workers/);
    expect(d.verification).toMatch(/via ws-gateway/);
    expect((await connectedFrame()).server).toBe('ws-gateway');
    console.log(`deploy route: /api/ 502 for ${toBackend.windowMs} ms to the backend, ${back.windowMs} ms back`);
    expectNothingLost(back.value);
  }, 900_000);

  it('rollback --ws-to backend --backend-workers 1 and --undo: one command each way under traffic', async () => {
    let diagnosis = '';
    let action = '';
    let verification = '';
    const rolled = await measure502(() =>
      drill.incident('rollback --ws-to backend --backend-workers 1', async () => {
        diagnosis = (await drill.follow('rollback', 'Diagnosis')).text;
        action = (await drill.follow('rollback', 'Action', { tag: 'to-backend' })).text;
        verification = (await drill.follow('rollback', 'Verification')).text;
      }),
    );
    expect(diagnosis).toMatch(/gateway \/health\s+OK/);
    expect(action).toMatch(/record[\s\S]*restart backend[\s\S]*reload[\s\S]*drain[\s\S]*verify[\s\S]*rollback done/);
    expect(action).not.toMatch(/desync/);
    expect(verification).toMatch(/via backend/);
    expect((await connectedFrame()).server).toBe('backend');
    expectNothingLost(rolled.value);

    const undone = await measure502(() =>
      drill.incident('rollback --undo', async () => {
        action = (await drill.follow('rollback', 'Action', { tag: 'to-gateway' })).text;
        verification = (await drill.follow('rollback', 'Verification')).text;
      }),
    );
    expect(action).toMatch(/undo stack local[\s\S]*reload[\s\S]*restart backend[\s\S]*undo done/);
    expect(verification).toMatch(/via ws-gateway/);
    expect((await connectedFrame()).server).toBe('ws-gateway');
    console.log(`rollback: /api/ 502 for ${rolled.windowMs} ms, undo ${undone.windowMs} ms`);
    expectNothingLost(undone.value);
    // The stack runs its file again: a second npm start changes nothing and says what it verified.
    const again = await sh('npm start');
    expect(again.out).toMatch(/nothing to do: the running stack matches the stack file/);
    expect(again.out).toMatch(/Nothing to change: the running stack runs Pulumi\.local\.yaml; verified live: \/ws\/ served by the gateway \(heartbeat 20000 ms\), backend 4 workers/);
    expect(drill.unfollowedActions('deploy')).toEqual([]);
    expect(drill.unfollowedActions('rollback')).toEqual([]);
  }, 900_000);
});
