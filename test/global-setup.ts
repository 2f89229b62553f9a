import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { freePort } from '../infra/targets/local/ports.js';
import { startPostgres, startRedis, type PostgresProcess, type ServiceProcess } from '../infra/targets/local/processes.js';

// One real Redis and one real Postgres for the whole suite, on free ports in a temp dir.
// Test files that need isolation create their own database (test/services.ts) or start
// their own Redis (e.g. to kill it mid-test).

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    postgresUrl: string;
  }
}

/** Starts the shared services and tears them down after the run. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-test-'));
  // Postgres runs as the postgres user when we are root: it must be able to enter the dir.
  await chmod(dir, 0o755);
  const results = await Promise.allSettled([
    startRedis({ dir: path.join(dir, 'redis'), port: await freePort() }),
    startPostgres({ dir: path.join(dir, 'postgres'), port: await freePort() }),
  ]);
  const started: ServiceProcess[] = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((s) => s.stop()));
    await rm(dir, { recursive: true, force: true });
    throw failed.reason;
  }
  const [redis, postgres] = started as [ServiceProcess, PostgresProcess];
  project.provide('redisUrl', `redis://127.0.0.1:${redis.port}`);
  project.provide('postgresUrl', postgres.url);
  return async () => {
    await Promise.all(started.map((s) => s.stop()));
    await rm(dir, { recursive: true, force: true });
  };
}
