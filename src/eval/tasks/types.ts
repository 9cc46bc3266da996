/** Shared shapes of the zero-shot tasks: every task file turns its data into multiple-choice items. */

/** One (context, continuation) pair to score; the model gives log p(continuation | context). */
export interface Choice {
  context: string;
  continuation: string;
}

/** A multiple-choice item: the right answer is `label`; `normLengths` are the character lengths used by acc_norm. */
export interface McItem {
  choices: Choice[];
  label: number;
  /** Characters of each answer (lm-eval: len(choice) without the leading space); absent → no acc_norm. */
  normLengths?: number[];
}

/** A loaded task. */
export interface TaskData {
  /** Name as requested (`copa`, `blimp:anaphor_gender_agreement`). */
  name: string;
  /** File the items came from. */
  file: string;
  items: McItem[];
  /** Report acc_norm (length-normalised) as well as acc. */
  accNorm: boolean;
}

/** Scores of one task. */
export interface TaskResult {
  acc: number;
  acc_norm?: number;
  n: number;
}

/**
 * Log-likelihood scorer on text: for every pair, Σ log p(continuation tokens | context). `group` ties the choices of
 * one item (a scorer may share work between them). Tests pass a fake one; evaluateTasks builds one on the model.
 */
export type TextScorer = (pairs: (Choice & { group: number })[]) => Promise<number[]>;

/** Options every task loader gets. */
export interface LoadOptions {
  /** First n items only. */
  limit?: number;
}
