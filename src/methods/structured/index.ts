/** Structured pruning: channel scores, selection and channel counts (plain arrays; the graph surgery is src/model/surgery.ts). */
export * from './scores.js';
export * from './allocation.js';
export * from './heads.js';
export * from './depth.js';
