#!/usr/bin/env tsx
// `npm test`: makes sure the OS services the tests start are installed, then runs vitest with
// both the human reporter and a JSON report (test-results/vitest.json) that CI counts from.
import { $ } from 'zx';
import { formatErrorForCli } from '../infra/errors.js';
import { ensureOsPackages, MONITORING_BINARIES } from '../infra/targets/local/os-packages.js';

try {
  // promtool checks the alert rules and the dashboard; Prometheus runs in the monitoring live test.
  ensureOsPackages(undefined, MONITORING_BINARIES);
} catch (err) {
  console.error(formatErrorForCli(err));
  process.exit(1);
}
const args = ['vitest', 'run', '--reporter=default', '--reporter=json', '--outputFile.json=test-results/vitest.json', ...process.argv.slice(2)];
const result = await $({ stdio: 'inherit', nothrow: true })`npx ${args}`;
process.exit(result.exitCode ?? 1);
