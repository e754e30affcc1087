import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

/** Where `npm run dev` sends API calls. */
const coordinator = process.env.TESTRUNNER_URL ?? 'http://127.0.0.1:50051';

export default defineConfig({
  // The coordinator serves dist/ at `/` and answers unknown paths with
  // index.html, so assets use absolute paths to load from nested routes
  // such as /testruns/12.
  base: '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // React, MUI and Connect make one chunk of about 730 kB (230 kB gzipped):
    // fine for an internal console served from the same host.
    chunkSizeWarningLimit: 1024,
  },
  server: {
    // `npm run dev` against a running coordinator: grpc-web calls and log
    // downloads are proxied, so the page keeps one origin (no CORS).
    proxy: {
      '/testrunner.v1.TestrunService': coordinator,
      '/testrunner.v1.ContentService': coordinator,
      '^/testruns/.*/log$': coordinator,
    },
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['src/test/setup.ts'],
    restoreMocks: true,
  },
});
