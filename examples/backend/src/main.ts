import cluster, { type Worker } from 'node:cluster';
import pg from 'pg';
import { BackendConfigError, configFromEnv, type BackendConfig } from './config.js';
import { createLogger } from './log.js';
import { PrimaryMetrics } from './metrics.js';
import { loadMigrations, migrate, setGatewayRolePassword } from './migrate.js';
import { seedDemoData } from './seed.js';
import { outboxState } from './store.js';
import { DRAIN_GRACE_MS, startWorker } from './worker.js';

// Entry point: the cluster primary prepares the database (migrations, demo seed) and then
// forks BACKEND_WORKERS workers that share the port. Node's cluster hands connections to the
// workers round-robin, which is exactly what makes legacy /ws/ mode lose events.

/** Message from the primary telling a worker the schema is migrated and seeded. */
const DB_READY = 'replyx:db-ready';
/** Message from the primary telling workers that every worker now listens (health turns "ok"). */
const ALL_LISTENING = 'replyx:all-listening';
/** Message from a worker asking to be told when the schema is ready. */
const WORKER_WAITING = 'replyx:worker-waiting';

async function prepareDatabase(config: BackendConfig, log: ReturnType<typeof createLogger>): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const client = new pg.Client({ connectionString: config.databaseUrl, connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      const applied = await migrate(client, await loadMigrations());
      if (config.seedDemo) await seedDemoData(client, config.tokenKeys);
      if (config.gatewayDatabasePassword !== undefined) await setGatewayRolePassword(client, config.gatewayDatabasePassword);
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
  let stopping = false;
  let dbReady = false;
  // Workers load their code while the primary migrates; they listen only once told the schema
  // is ready, so no request ever meets a half-migrated database.
  const waiting = new Set<Worker>();
  const listening = new Set<Worker>();
  // The primary reads the outbox for the metrics only; one connection is plenty.
  let outboxDb: pg.Pool | undefined;
  const metrics = new PrimaryMetrics({
    workers: () => listening.size,
    configuredWorkers: config.workers,
    outbox: () => {
      if (!dbReady) return Promise.reject(new Error('database not prepared yet'));
      if (!outboxDb) {
        outboxDb = new pg.Pool({ connectionString: config.databaseUrl, max: 1, connectionTimeoutMillis: 2000, query_timeout: 2000 });
        // An idle connection dropped by a Postgres restart must not take the primary (and every worker) down.
        outboxDb.on('error', (err) => log.warn({ err: err.message }, 'metrics database connection lost; the next scrape reconnects'));
      }
      return outboxState(outboxDb);
    },
  });
  const fork = (): Worker => {
    const w = cluster.fork({ REPLYX_WORKER: '1' });
    metrics.serve(w);
    // The worker asks once its listener is in place, so the answer cannot be lost.
    w.on('message', (m: unknown) => {
      if (m !== WORKER_WAITING) return;
      if (dbReady) w.send(DB_READY);
      else waiting.add(w);
    });
    return w;
  };
  let allListening = false;
  cluster.on('listening', (worker) => {
    listening.add(worker);
    if (allListening) {
      // A replacement for a crashed worker joins a cluster that was already complete.
      worker.send(ALL_LISTENING);
    } else if (listening.size === config.workers) {
      allListening = true;
      for (const w of listening) if (w.isConnected()) w.send(ALL_LISTENING);
      // `ready: true` is the line the local supervisor waits for (READY_LOG_FIELD in infra/targets/local/plan.ts).
      log.info({ workers: config.workers, port: config.port, ready: true }, `backend listening on ${config.host}:${config.port} with ${config.workers} workers`);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    listening.delete(worker);
    if (stopping) return;
    log.error({ worker: worker.process.pid, code, signal }, 'worker died; starting a new one');
    // A short pause stops a worker that crashes at start from spinning the CPU.
    setTimeout(() => !stopping && fork(), 1000);
  });
  for (let i = 0; i < config.workers; i += 1) fork();
  try {
    await prepareDatabase(config, log);
  } catch (err) {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    throw err;
  }
  dbReady = true;
  for (const w of waiting) if (w.isConnected()) w.send(DB_READY);
  waiting.clear();
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping workers');
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    for (const w of workers) w.process.kill('SIGTERM');
    void outboxDb?.end().catch(() => undefined);
    // Workers drain for up to DRAIN_GRACE_MS; this is the last resort after that.
    const force = setTimeout(() => {
      for (const w of workers) w.process.kill('SIGKILL');
      process.exit(1);
    }, DRAIN_GRACE_MS + 3000);
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
  await new Promise<void>((resolve) => {
    const onMessage = (m: unknown) => {
      if (m !== DB_READY) return;
      process.off('message', onMessage);
      resolve();
    };
    process.on('message', onMessage);
    process.send?.(WORKER_WAITING);
  });
  let clusterReady = false;
  process.on('message', (m: unknown) => {
    if (m === ALL_LISTENING) clusterReady = true;
  });
  const worker = await startWorker(config, log, config.port, () => clusterReady);
  const shutdown = () => {
    void worker.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), DRAIN_GRACE_MS + 1500).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', () => undefined);
}

try {
  const config = configFromEnv(process.env);
  await (cluster.isPrimary ? runPrimary(config) : runWorker(config));
} catch (err) {
  if (err instanceof BackendConfigError) {
    // One line naming each variable and its fix (the primary prints it; workers never get here).
    process.stderr.write(`${err.toLine()}\n`);
    process.exit(1);
  }
  createLogger('info').fatal({ err }, `backend failed to start: ${(err as Error).message}`);
  process.exit(1);
}
