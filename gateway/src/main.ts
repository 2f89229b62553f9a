// Entry point: `node --import tsx gateway/src/main.ts` locally, `node gateway/dist/main.js` in
// the image. Config errors print one line and exit 1; SIGTERM drains (4200 spread over
// DRAIN_WINDOW_MS), flushes the log and exits 0. SIGUSR2 hands the port to a successor: the
// listener closes, the connected clients stay until SIGTERM (or HANDOVER_TIMEOUT_MS).
import { GatewayConfigError, loadConfig, type GatewayConfig } from './config.js';
import { gatewayErrorLine } from './error-codes.js';
import { createLogger } from './log/logger.js';
import { createGateway } from './server.js';

let config: GatewayConfig;
try {
  config = loadConfig();
} catch (err) {
  process.stderr.write(`${err instanceof GatewayConfigError ? err.toLine() : gatewayErrorLine('RPX_GATEWAY_CONFIG', String(err), 'check the environment against docs/gateway.md, Configuration')}\n`);
  process.exit(1);
}

const logger = createLogger(config.logLevel, undefined, { instance: config.instanceId });
const gateway = createGateway(config, { logger });
let stopping = false;

const stop = (signal: string): void => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal, window_ms: config.drainWindowMs }, `received ${signal}; draining`);
  gateway
    .drain()
    .then(() => logger.flush(() => process.exit(0)))
    .catch((err: unknown) => {
      logger.error({ err: String(err) }, 'drain failed');
      logger.flush(() => process.exit(1));
    });
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGUSR2', () => {
  if (stopping) return;
  void gateway.handOver().then(() => {
    logger.info({ signal: 'SIGUSR2', timeout_ms: config.handoverTimeoutMs }, 'received SIGUSR2; listener closed for a successor, serving the connected clients until SIGTERM');
    // Whoever handed over may be gone before it sends SIGTERM: the clients must not stay here for ever.
    setTimeout(() => stop('HANDOVER_TIMEOUT_MS'), config.handoverTimeoutMs);
  });
});
process.on('SIGINT', () => stop('SIGINT'));

try {
  await gateway.listen();
} catch (err) {
  const message = err instanceof Error ? err.message : String(err);
  const fix = /EADDRINUSE/.test(message) ? `free port ${config.port} or set PORT` : /PEM|SPKI|key/i.test(message) ? 'check JWT_PUBLIC_KEY is an RS256 public key in PEM form' : 'see the message above';
  logger.fatal({ err: message }, 'gateway failed to start');
  logger.flush(() => {
    process.stderr.write(`${gatewayErrorLine('RPX_GATEWAY_START', message, fix)}\n`);
    process.exit(1);
  });
}
