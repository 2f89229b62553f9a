import { existsSync } from 'node:fs';
import { execaSync } from 'execa';
import { ReplyxError } from '../../errors.js';
import { findBinary } from './processes.js';

// The stack's OS services come from Debian packages. When a binary is missing we install its
// package (root on Debian) or print the exact command (anyone else), never fail silently.

/** Binaries the local stack and the tests need, with the Debian package providing each. */
export const REQUIRED_BINARIES: readonly { binary: string; pkg: string }[] = [
  { binary: 'nginx', pkg: 'nginx-light' },
  { binary: 'redis-server', pkg: 'redis-server' },
  { binary: 'postgres', pkg: 'postgresql' },
  { binary: 'initdb', pkg: 'postgresql' },
];

/** Binaries monitoring needs: Prometheus for the local stack, promtool for the rule tests. */
export const MONITORING_BINARIES: readonly { binary: string; pkg: string }[] = [
  { binary: 'prometheus', pkg: 'prometheus' },
  { binary: 'promtool', pkg: 'prometheus' },
];

/** The Debian packages whose binaries are missing on this machine (pure apart from the PATH lookup). */
export function missingPackages(find: (bin: string) => string | undefined = findBinary, extra: readonly { binary: string; pkg: string }[] = []): string[] {
  return [...new Set([...REQUIRED_BINARIES, ...extra].filter((r) => !find(r.binary)).map((r) => r.pkg))];
}

/** The argv to install packages with apt, as a user would type it. */
export function aptInstallCommand(pkgs: readonly string[]): string[] {
  return ['apt-get', 'install', '-y', '--no-install-recommends', ...pkgs];
}

/**
 * Makes sure nginx, Redis and Postgres (and `extra`, e.g. Prometheus) are installed: installs the
 * missing Debian packages when running as root on Debian, otherwise throws with the exact command to run.
 */
export function ensureOsPackages(log: (line: string) => void = (l) => console.error(l), extra: readonly { binary: string; pkg: string }[] = []): void {
  const missing = missingPackages(findBinary, extra);
  if (missing.length === 0) return;
  const canInstall = process.getuid?.() === 0 && existsSync('/usr/bin/apt-get');
  if (!canInstall) {
    throw new ReplyxError(
      'RPX_MISSING_PACKAGE',
      `missing OS packages: ${missing.join(', ')}`,
      `install them with: sudo apt-get update && sudo ${aptInstallCommand(missing).join(' ')}`,
    );
  }
  log(`installing missing OS packages: ${missing.join(', ')} (apt-get)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    const [apt, ...args] = aptInstallCommand(missing);
    execaSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    execaSync(apt!, args, { stdio: 'inherit', env });
  } catch (err) {
    throw new ReplyxError('RPX_APT_FAILED', `apt-get could not install ${missing.join(', ')}`, 'run the apt-get command by hand and read its error', { cause: err });
  }
  const still = missingPackages(findBinary, extra);
  if (still.length > 0) {
    throw new ReplyxError('RPX_MISSING_PACKAGE', `still missing after apt-get: ${still.join(', ')}`, 'install them by hand and run again');
  }
}
