import { defineConfig } from 'vitest/config';

// Real servers on real ports: give each test room, and run files in separate forks so a
// crashed server in one file cannot take the others with it.
export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**', '.stack/**'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    globalSetup: ['test/global-setup.ts'],
  },
});
