import cluster, { type Worker } from 'node:cluster';
import pg from 'pg';
import { configFromEnv, type BackendConfig } from './config.js';
import { createLogger } from './log.js';
import { loadMigrations, migrate } from './migrate.js';
import { seedDemoData } from './seed.js';
import { startWorker } from './worker.js';

// Entry point: the cluster primary prepares the database (migrations, demo seed) and then
// forks BACKEND_WORKERS workers that share the port. Node's cluster hands connections to the
// workers round-robin, which is exactly what makes legacy /ws/ mode lose events.

async function prepareDatabase(config: BackendConfig, log: ReturnType<typeof createLogger>): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const client = new pg.Client({ connectionString: config.databaseUrl, connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      const applied = await migrate(client, await loadMigrations());
      if (config.seedDemo) await seedDemoData(client);
      log.info({ applied, seeded: config.seedDemo }, applied.length ? `applied migrations ${applied.join(', ')}` : 'schema up to date');
      return;
    } catch (err) {
      const retryable = (err as { code?: string }).code === 'ECONNREFUSED' || (err as { code?: string }).code === '57P03';
      if (!retryable || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

async function runPrimary(config: BackendConfig): Promise<void> {
  const log = createLogger(config.logLevel, { role: 'primary' });
  await prepareDatabase(config, log);
  let stopping = false;
  const fork = (): Worker => cluster.fork({ REPLYX_WORKER: '1' });
  for (let i = 0; i < config.workers; i += 1) fork();
  let online = 0;
  cluster.on('listening', () => {
    online += 1;
    if (online === config.workers) log.info({ workers: config.workers, port: config.port }, `backend listening on ${config.host}:${config.port} with ${config.workers} workers`);
  });
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    log.error({ worker: worker.process.pid, code, signal }, 'worker died; starting a new one');
    // A short pause stops a worker that crashes at start from spinning the CPU.
    setTimeout(() => !stopping && fork(), 1000);
  });
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping workers');
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    for (const w of workers) w.process.kill('SIGTERM');
    const force = setTimeout(() => {
      for (const w of workers) w.process.kill('SIGKILL');
      process.exit(1);
    }, 10_000);
    force.unref();
    const check = setInterval(() => {
      if (workers.every((w) => w.isDead())) {
        clearInterval(check);
        process.exit(0);
      }
    }, 50);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

async function runWorker(config: BackendConfig): Promise<void> {
  const log = createLogger(config.logLevel, { role: 'worker' });
  const worker = await startWorker(config, log);
  const shutdown = () => {
    void worker.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', () => undefined);
}

try {
  const config = configFromEnv(process.env);
  await (cluster.isPrimary ? runPrimary(config) : runWorker(config));
} catch (err) {
  createLogger('info').fatal({ err }, `backend failed to start: ${(err as Error).message}`);
  process.exit(1);
}
