import { readdirSync } from 'node:fs';
import { defineConfig } from 'tsup';

/** The package's entry points (package.json `exports`): dist/<key>.js is built from src/<key>.ts. */
const PUBLIC = {
  index: 'src/index.ts',
  'search/index': 'src/search/index.ts',
  'search/distributed/index': 'src/search/distributed/index.ts',
  'eval/index': 'src/eval/index.ts',
  'report/index': 'src/report/index.ts',
  'testing/index': 'src/testing/index.ts',
};

export default defineConfig({
  entry: {
    ...PUBLIC,
    'cli/main': 'src/cli/main.ts',
    // main.ts loads each command on demand, so each is an entry of its own.
    ...Object.fromEntries(
      // every file of src/cli/commands, so a new command cannot be left out of the package
      readdirSync('src/cli/commands').filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).map((c) => [`cli/commands/${c}`, `src/cli/commands/${c}.ts`]),
    ),
    'search/worker-thread': 'src/search/worker-thread.ts',
  },
  format: ['esm'],
  dts: { entry: PUBLIC },
  target: 'node20',
  platform: 'node',
  sourcemap: true,
  clean: true,
  splitting: true,
  // transformers.js and onnxruntime stay external: the loading hook must patch the same instance the user imports.
  external: ['@huggingface/transformers', 'onnxruntime-node', 'onnxruntime-common'],
});
