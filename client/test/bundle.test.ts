import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

// The browser bundle: everything the package exports, bundled for the browser with no
// dependency, minified and gzipped, must stay within the size budget; and the sources must
// type-check against browser globals only (no Node types), so nothing Node-only slips in.

const CLIENT_DIR = path.resolve(import.meta.dirname, '..');
/** Budget for the whole package, minified + gzipped. */
const MAX_MIN_GZIP_BYTES = 5 * 1024;

describe('browser bundle', () => {
  it(`is at most ${MAX_MIN_GZIP_BYTES} bytes minified + gzipped, with no import left`, async () => {
    const result = await build({
      entryPoints: [path.join(CLIENT_DIR, 'src/index.ts')],
      bundle: true,
      minify: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      write: false,
      logLevel: 'silent',
    });
    const code = result.outputFiles[0]!.text;
    const minified = Buffer.byteLength(code);
    const gzipped = gzipSync(code, { level: 9 }).length;
    console.log(`@replyx/client bundle: ${minified} bytes minified, ${gzipped} bytes minified + gzipped`);
    expect(code).not.toMatch(/(^|[;}])\s*import\s*[\w{*"']|\brequire\(/m);
    expect(gzipped).toBeLessThanOrEqual(MAX_MIN_GZIP_BYTES);
  });

  it('type-checks with browser globals only (lib DOM, no @types/node)', async () => {
    const tsc = path.resolve(CLIENT_DIR, '../node_modules/typescript/bin/tsc');
    await expect(promisify(execFile)(process.execPath, [tsc, '--noEmit', '-p', path.join(CLIENT_DIR, 'tsconfig.build.json')])).resolves.toBeDefined();
  });
});
