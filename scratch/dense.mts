import { cpSync, rmSync } from 'node:fs';
import { postProcessSaved } from '../src/compress/index.js';
rmSync('scratch/out/dense', { recursive: true, force: true });
cpSync('../shared/models/bench-12l', 'scratch/out/dense', { recursive: true });
console.log(JSON.stringify(postProcessSaved('scratch/out/dense', { quantize: ['q8', 'q4'] }).files));
