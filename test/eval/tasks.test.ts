import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { zipSync, strToU8 } from 'fflate';
import { accuracy, evaluateTasks, loadTask, scoreTask, type TextScorer } from '../../src/eval/tasks/index.js';
import { preprocessHellaswag } from '../../src/eval/tasks/hellaswag.js';
import { winograndeItem } from '../../src/eval/tasks/winogrande.js';
import { blimpSubsets } from '../../src/eval/tasks/blimp.js';
import { DsaPruneError } from '../../src/errors.js';
import { hasShared, load, repoRoot, sharedDir, SKIP_SHARED, storiesDir } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'dsa-eval-tasks-'));
function put(rel: string, text: string | Uint8Array): string {
  const p = path.join(dir, rel);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, text);
  return p;
}
const jsonl = (recs: unknown[]) => recs.map((r) => JSON.stringify(r)).join('\n') + '\n';

/** Fake scorer: log-likelihood = −(number of characters of the continuation not in `liked`) − 0.01·length. */
const fake = (score: (context: string, continuation: string) => number): TextScorer => async (pairs) => pairs.map((p) => score(p.context, p.continuation));

describe('accuracy / acc_norm (known answers)', () => {
  it('acc takes the highest total, acc_norm the highest per character of the answer; ties go to the first', () => {
    const items = [
      { choices: [{ context: '', continuation: ' aa' }, { context: '', continuation: ' bbbbbbbb' }], label: 1, normLengths: [2, 8] },
      { choices: [{ context: '', continuation: ' x' }, { context: '', continuation: ' y' }], label: 0, normLengths: [1, 1] },
      { choices: [{ context: '', continuation: ' x' }, { context: '', continuation: ' y' }], label: 1, normLengths: [1, 1] },
    ];
    // item 0: totals −4 vs −8 → acc picks 0 (wrong); per char −2 vs −1 → acc_norm picks 1 (right).
    // items 1, 2: a tie → both pick choice 0: right for item 1, wrong for item 2.
    const r = accuracy(items, [[-4, -8], [-1, -1], [-1, -1]], true);
    expect(r.n).toBe(3);
    expect(r.acc).toBeCloseTo(1 / 3, 12);
    expect(r.acc_norm).toBeCloseTo(2 / 3, 12);
    expect(accuracy(items, [[-4, -8], [-1, -1], [-1, -1]], false).acc_norm).toBeUndefined();
  });
});

describe('task files: prompts as lm-eval builds them', () => {
  it('COPA: "premise because|so" + lower-cased choice', async () => {
    const f = put('superglue/COPA/val.jsonl', jsonl([
      { premise: 'The man turned on the faucet.', choice1: 'The toilet filled with water.', choice2: 'Water flowed from the spout.', question: 'effect', label: 1, idx: 0 },
      { premise: 'My body cast a shadow over the grass.', choice1: 'The sun was rising.', choice2: 'The grass was cut.', question: 'cause', label: 0, idx: 1 },
    ]));
    const t = loadTask('copa', [dir]);
    expect(t.file).toBe(f);
    expect(t.items[0]!.choices).toEqual([
      { context: 'The man turned on the faucet so', continuation: ' the toilet filled with water.' },
      { context: 'The man turned on the faucet so', continuation: ' water flowed from the spout.' },
    ]);
    expect(t.items[1]!.choices[0]!.context).toBe('My body cast a shadow over the grass because');
    // A scorer that likes "water"/"sun" gets both right.
    const r = await scoreTask(t, fake((_, c) => (/water flowed|sun/.test(c) ? 0 : -1)));
    expect(r).toEqual({ acc: 1, n: 2 });
  });

  it('PIQA, ARC, BoolQ, HellaSwag, WinoGrande formats', async () => {
    put('piqa/dev.jsonl', jsonl([{ goal: 'Open a jar', sol1: 'twist the lid', sol2: 'eat the lid' }]));
    put('piqa/dev-labels.lst', '0\n');
    const p = loadTask('piqa', [dir]);
    expect(p.items[0]).toEqual({
      choices: [{ context: 'Question: Open a jar\nAnswer:', continuation: ' twist the lid' }, { context: 'Question: Open a jar\nAnswer:', continuation: ' eat the lid' }],
      label: 0,
      normLengths: [13, 11],
    });
    put('arc/ARC-Easy-Test.jsonl', jsonl([{ id: 'x', question: { stem: 'Which is hot?', choices: [{ text: 'ice', label: '1' }, { text: 'fire', label: '2' }] }, answerKey: '2' }]));
    const a = loadTask('arc_easy', [dir]);
    expect(a.items[0]!.label).toBe(1);
    expect(a.items[0]!.choices[1]).toEqual({ context: 'Question: Which is hot?\nAnswer:', continuation: ' fire' });
    put('superglue/BoolQ/val.jsonl', jsonl([{ question: 'is the sky blue', passage: 'The sky is blue.', idx: 0, label: 'true' }]));
    const b = loadTask('boolq', [dir]);
    expect(b.items[0]).toEqual({ choices: [{ context: 'The sky is blue.\nQuestion: is the sky blue?\nAnswer:', continuation: ' no' }, { context: 'The sky is blue.\nQuestion: is the sky blue?\nAnswer:', continuation: ' yes' }], label: 1 });
    put('hellaswag_val_full.txt', ['Cooking: A man [title] cuts an onion.  He', '2', 'sings.', 'flies.', 'chops it finely.', 'runs.'].join('\n') + '\n');
    const h = loadTask('hellaswag', [dir]);
    expect(h.items[0]!.choices[2]).toEqual({ context: 'Cooking: A man. cuts an onion. He', continuation: ' chops it finely.' });
    expect(h.items[0]!.normLengths).toEqual([6, 6, 16, 5]);
    expect(preprocessHellaswag(' a [header] b ')).toBe('a b');
    const w = winograndeItem({ sentence: 'The trophy did not fit in the suitcase because the _ was too big.', options: ['trophy', 'suitcase'], label: 0 });
    expect(w!.choices).toEqual([
      { context: 'The trophy did not fit in the suitcase because the trophy', continuation: ' was too big.' },
      { context: 'The trophy did not fit in the suitcase because the suitcase', continuation: ' was too big.' },
    ]);
    put('llm_adapters/winogrande.test.json', JSON.stringify([{ instruction: 'Please choose the correct answer to fill in the blank to complete the given sentence: Sarah was a much better surgeon than Maria so _ always got the easier cases.\n\nOption1: Sarah Option2: Maria Answer format: option1/option2', input: '', output: 'the correct answer is option2', answer: 'option2' }], null, 4));
    const wg = loadTask('winogrande', [dir]);
    expect(wg.items[0]).toEqual({
      choices: [
        { context: 'Sarah was a much better surgeon than Maria so Sarah', continuation: ' always got the easier cases.' },
        { context: 'Sarah was a much better surgeon than Maria so Maria', continuation: ' always got the easier cases.' },
      ],
      label: 1,
    });
  });

  it('BLiMP from a zip (fflate) or a jsonl folder: good sentence first, label 0', async () => {
    const rec = { sentence_good: 'Kim saw herself.', sentence_bad: 'Kim saw himself.', UID: 'toy_subset' };
    put('z/blimp.zip', zipSync({ 'data/toy_subset.jsonl': strToU8(jsonl([rec, rec, rec])) }));
    const t = loadTask('blimp:toy_subset', [path.join(dir, 'z')], { limit: 2 });
    expect(t.items.length).toBe(2);
    expect(t.items[0]).toEqual({ choices: [{ context: '', continuation: 'Kim saw herself.' }, { context: '', continuation: 'Kim saw himself.' }], label: 0 });
    expect(() => loadTask('blimp:other_subset', [path.join(dir, 'z')])).toThrow(/has no subset "other_subset"/);
    put('j/blimp/toy_subset.jsonl', jsonl([rec]));
    expect(loadTask('blimp:toy_subset', [path.join(dir, 'j')]).items.length).toBe(1);
  });
});

describe('task errors name the file, line or expected path', () => {
  it('malformed lines', () => {
    const f = put('bad1/superglue/COPA/val.jsonl', jsonl([{ premise: 'a.', choice1: 'b', choice2: 'c', question: 'cause', label: 0 }]) + '{"premise": oops}\n');
    expect(() => loadTask('copa', [path.join(dir, 'bad1')])).toThrow(`${f}:2: invalid JSON`);
    const g = put('bad2/superglue/COPA/val.jsonl', jsonl([{ premise: 'a.', choice1: 'b', choice2: 'c', question: 'why', label: 0 }]));
    expect(() => loadTask('copa', [path.join(dir, 'bad2')])).toThrow(`${g}:1: field "question"`);
    const h = put('bad3/hellaswag_val_full.txt', 'ctx\n7\na\nb\nc\nd\n');
    expect(() => loadTask('hellaswag', [path.join(dir, 'bad3')])).toThrow(`${h}:2: expected the label 0-3`);
    const a = put('bad4/arc/ARC-Easy-Test.jsonl', '\n' + jsonl([{ question: { stem: 'q', choices: [{ text: 'a', label: 'A' }, { text: 'b', label: 'B' }] }, answerKey: 'E' }]));
    expect(() => loadTask('arc_easy', [path.join(dir, 'bad4')])).toThrow(`${a}:2: answerKey "E"`);
    put('bad5/piqa/dev.jsonl', jsonl([{ goal: 'g', sol1: 'a', sol2: 'b' }, { goal: 'g', sol1: 'a', sol2: 'b' }]));
    const l = put('bad5/piqa/dev-labels.lst', '1\nx\n');
    expect(() => loadTask('piqa', [path.join(dir, 'bad5')])).toThrow(`${l}:2: expected 0 or 1`);
  });
  it('missing files and unknown tasks', () => {
    const empty = path.join(dir, 'empty');
    mkdirSync(empty, { recursive: true });
    expect(() => loadTask('copa', [empty])).toThrow(`data file not found; expected ${path.join(empty, 'superglue/COPA/val.jsonl')}`);
    expect(() => loadTask('boolq=/no/such/file.jsonl', [empty])).toThrow('/no/such/file.jsonl');
    expect(() => loadTask('mmlu', [empty])).toThrow(DsaPruneError);
    put('bz/hellaswag_val_full.txt.bz2', 'BZh9');
    expect(() => loadTask('hellaswag', [path.join(dir, 'bz')])).toThrow(expect.objectContaining({ code: 'unsupported' }));
    put('gz/hellaswag_val_full.txt.gz', 'not gzip');
    expect(() => loadTask('hellaswag', [path.join(dir, 'gz')])).toThrow(expect.objectContaining({ code: 'invalid-data' }));
  });
});

describe.skipIf(!hasShared)(`stories260k on the shared task data (targets of issue 6; ${SKIP_SHARED})`, () => {
  it('COPA val 0.65 and BLiMP (first 200 pairs) equal the independent numpy numbers', async () => {
    const { model, tokenizer } = await load(storiesDir);
    const r = await evaluateTasks(model, tokenizer, [
      'copa',
      'blimp:sentential_negation_npi_licensor_present',
      'blimp:anaphor_gender_agreement',
      'blimp:determiner_noun_agreement_1',
      'blimp:regular_plural_subject_verb_agreement_1',
      'blimp:irregular_past_participle_adjectives',
    ], { limit: 200, dataDir: path.join(sharedDir, 'data/eval') });
    expect(r.copa).toEqual({ acc: 0.65, n: 100 });
    expect(r['blimp:sentential_negation_npi_licensor_present']!.acc).toBeCloseTo(0.91, 10);
    expect(r['blimp:anaphor_gender_agreement']!.acc).toBeCloseTo(0.74, 10);
    expect(r['blimp:determiner_noun_agreement_1']!.acc).toBeCloseTo(0.705, 10);
    expect(r['blimp:regular_plural_subject_verb_agreement_1']!.acc).toBeCloseTo(0.6, 10);
    expect(r['blimp:irregular_past_participle_adjectives']!.acc).toBeCloseTo(0.525, 10);
  });
  it('the BLiMP archive has 67 subsets, mixed-case names included', () => {
    const zip = path.join(sharedDir, 'data/eval/blimp.zip');
    const names = blimpSubsets(zip);
    expect(names.length).toBe(67);
    expect(names).toContain('principle_A_case_1');
    expect(loadTask('blimp:principle_A_case_1', [path.join(sharedDir, 'data/eval')], { limit: 3 }).items.length).toBe(3);
  });
});

describe('the task subsets shipped in data/tasks (no ../shared needed)', () => {
  it('give the issue-6 targets on stories260k: COPA 0.65, BLiMP first 200, HellaSwag first 300 acc_norm ≈ 0.257', async () => {
    const { model, tokenizer } = await load(storiesDir);
    const dataDir = path.join(repoRoot, 'data/tasks');
    const r = await evaluateTasks(model, tokenizer, ['copa', 'blimp:anaphor_gender_agreement', 'blimp:determiner_noun_agreement_1', 'hellaswag'], { dataDir });
    expect(r.copa).toEqual({ acc: 0.65, n: 100 });
    expect(r['blimp:anaphor_gender_agreement']).toEqual({ acc: 0.74, n: 200 });
    expect(r['blimp:determiner_noun_agreement_1']).toEqual({ acc: 0.705, n: 200 });
    expect(r.hellaswag!.n).toBe(300);
    expect(Math.abs(r.hellaswag!.acc_norm! - 0.257)).toBeLessThan(0.03);
  }, 300_000);
});
