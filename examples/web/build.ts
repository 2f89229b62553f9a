import { copyFile, mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'esbuild';

// Builds the demo pages into one directory nginx serves as is: the static pages and stylesheet
// from pages/, and one browser bundle per page (src/operator.ts, widget.ts, site.ts, each with
// @replyx/client inside, no other dependency). The local stack calls this before nginx starts.

const WEB_DIR = import.meta.dirname;
/** The pages' entry points; each becomes `<name>.js` next to `<name>.html`. */
export const DEMO_ENTRY_POINTS = ['operator', 'widget', 'site'] as const;

/** Builds the demo pages into `outDir` (created if missing); returns the files written. */
export async function buildDemoPages(outDir: string): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const pagesDir = path.join(WEB_DIR, 'pages');
  const statics = await readdir(pagesDir);
  await Promise.all(statics.map((f) => copyFile(path.join(pagesDir, f), path.join(outDir, f))));
  await build({
    entryPoints: DEMO_ENTRY_POINTS.map((name) => path.join(WEB_DIR, 'src', `${name}.ts`)),
    outdir: outDir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    sourcemap: false,
    logLevel: 'silent',
  });
  return [...statics, ...DEMO_ENTRY_POINTS.map((n) => `${n}.js`)].sort();
}
