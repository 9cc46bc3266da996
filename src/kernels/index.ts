/** Typed-array hot loops shared by the pruning methods: selection, Cholesky, blocked products. */
export {
  quickselectInPlace,
  kthSmallest,
  stableCut,
  setSmallest,
  smallestInGroup,
} from './select.js';
export type { NumericArray, StableCut } from './select.js';
export { choleskyLowerInPlace, invertLowerInPlace, upperCholeskyOfInverseInPlace } from './cholesky.js';
export { subtractProduct } from './gemm.js';
export { countZeros, transpose } from './dense.js';
export type { MatView } from './gemm.js';
