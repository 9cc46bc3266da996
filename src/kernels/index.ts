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
export {
  choleskyLowerInPlaceAsync,
  invertLowerInPlaceAsync,
  upperCholeskyOfInverseInPlaceAsync,
  BLAS_NB,
} from './cholesky-blas.js';
export { blasSubtractProduct, blasProduct, configureBlas, blasEnabled, releaseBlas, BLAS_MIN_WORK } from './blas.js';
export type { BlasDtype } from './blas.js';
