/**
 * `dsa-prune inspect <modelDir> [--json]`: the prunable linears of a model folder (block, role, shape, dtype, node,
 * sparsity = fraction of exact zeros), read from the ONNX graph without creating an onnxruntime session.
 */
import { defineCommand, formatOptions, parseCommandArgs } from '../args.js';
import type { CliIo } from '../io.js';
import { formatInspectTable, inspectModel } from '../../model/index.js';
import { EXIT } from '../../errors.js';

const spec = defineCommand({
  name: 'inspect',
  usage: 'dsa-prune inspect <modelDir> [--json]',
  positionals: { min: 1, max: 1, names: ['modelDir'] },
  options: {},
});

export const help = `dsa-prune inspect — list the prunable linear layers of a model folder

Usage: ${spec.usage}

Shows, per decoder block, every linear dsa-prune would prune: role (q, k, v, o, gate, up, down; fused qkv / gate_up
with their parts), shape dOut×dIn, dtype and the fraction of weights that are exactly zero (so a pruned model can be
checked). lm_head and embeddings are not listed (they are not pruned by default).

${formatOptions(spec.options)}

JSON (--json): { "blocks": n, "linears": [{ "name", "block", "role", "dIn", "dOut", "dtype", "node", "sparsity" }], "prunableParams": n }

Examples:
  dsa-prune inspect models/stories260k
  dsa-prune inspect out/wanda50 --json
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const args = parseCommandArgs(argv, spec);
  if (args.help) {
    io.stdout(help);
    return EXIT.ok;
  }
  const report = await inspectModel(args.positionals[0]);
  if (args.common.json) io.stdout(JSON.stringify(report, null, 2) + '\n');
  else io.stdout(formatInspectTable(report));
  return EXIT.ok;
}
