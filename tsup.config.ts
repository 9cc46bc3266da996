import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    'testing/index': 'src/testing/index.ts',
    'cli/main': 'src/cli/main.ts',
    // main.ts loads each command on demand, so each is an entry of its own.
    ...Object.fromEntries(
      ['inspect', 'prune', 'eval', 'search', 'worker', 'report', 'demo'].map((c) => [`cli/commands/${c}`, `src/cli/commands/${c}.ts`]),
    ),
    'search/worker-thread': 'src/search/worker-thread.ts',
  },
  format: ['esm'],
  dts: { entry: { index: 'src/index.ts', 'testing/index': 'src/testing/index.ts' } },
  target: 'node20',
  platform: 'node',
  sourcemap: true,
  clean: true,
  splitting: true,
  // transformers.js and onnxruntime stay external: the loading hook must patch the same instance the user imports.
  external: ['@huggingface/transformers', 'onnxruntime-node', 'onnxruntime-common'],
});
