import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // Native addons and LibTorch's global state are per process: isolate files
    // in forks. Two cores: run files one after another so timing-sensitive
    // tests (event loop, threads) are not starved.
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
