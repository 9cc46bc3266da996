/** The model's context length from config.json (the key differs by architecture), or undefined when none is set. */
export function contextLength(config: Record<string, unknown> | undefined): number | undefined {
  for (const k of ['max_position_embeddings', 'n_positions', 'max_seq_len', 'max_sequence_length', 'seq_length']) {
    const v = Number(config?.[k]);
    if (Number.isInteger(v) && v > 0) return v;
  }
  return undefined;
}
