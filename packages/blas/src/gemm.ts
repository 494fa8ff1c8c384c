// The system BLAS on Float32Arrays: row-major matrix products, column sums and sums of two arrays.
// Arrays (and subarray views) go to C as raw pointers without copying, so a call costs well under a
// microsecond on top of the math.
import { type BlasLibrary, CBLAS_NO_TRANS, CBLAS_ROW_MAJOR, CBLAS_TRANS, loadBlasLibrary } from './library.ts';

let library: BlasLibrary | null = null;
/** The library, loaded on the first call that needs it. */
const blas = (): BlasLibrary => (library ??= loadBlasLibrary());
/** A row of ones for columnSums, grown to the longest column summed. */
let ones = new Float32Array(0);

/**
 * c[m×n] = op(a) · op(b) (+ c when `accumulate`), all row-major and densely packed:
 * op(a) is m×k (a is stored k×m when transposeA), op(b) is k×n (b is stored n×k when transposeB).
 */
export function gemm(
  transposeA: boolean,
  transposeB: boolean,
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  accumulate = false,
): void {
  stridedGemm(transposeA, transposeB, m, n, k, a, transposeA ? m : k, b, transposeB ? k : n, c, n, accumulate);
}

/** stridedGemm's signature, for code that reaches it through the backend (host-backend.ts). */
export type StridedGemm = typeof stridedGemm;

/**
 * As gemm, on row-major matrices whose rows lie `lda`, `ldb` and `ldc` floats apart: each array
 * starts at its matrix's first value, so a matrix can be one head's columns of a wider one.
 */
export function stridedGemm(
  transposeA: boolean,
  transposeB: boolean,
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  c: Float32Array,
  ldc: number,
  accumulate = false,
): void {
  if (m === 0 || n === 0) return;
  if (k === 0) {
    // BLAS rejects leading dimensions of 0; an empty sum is zero.
    if (!accumulate) for (let row = 0; row < m; row++) c.fill(0, row * ldc, row * ldc + n);
    return;
  }
  blas().sgemm(
    CBLAS_ROW_MAJOR,
    transposeA ? CBLAS_TRANS : CBLAS_NO_TRANS,
    transposeB ? CBLAS_TRANS : CBLAS_NO_TRANS,
    m,
    n,
    k,
    1,
    a,
    lda,
    b,
    ldb,
    accumulate ? 1 : 0,
    c,
    ldc,
  );
}

/**
 * out[j] = Σ_r values[r·width + j], the column sums of a row-major rows × width matrix, as one
 * BLAS matrix–vector product with a vector of ones: it reads the matrix where it lies (a bias
 * gradient's rows). Float32 sums in BLAS's order. False (nothing written) without cblas_sgemv.
 */
export function columnSums(values: Float32Array, rows: number, width: number, out: Float32Array): boolean {
  const sgemv = blas().sgemv;
  if (sgemv === null || rows === 0 || width === 0) return false;
  if (ones.length < rows) ones = new Float32Array(rows).fill(1);
  sgemv(CBLAS_ROW_MAJOR, CBLAS_TRANS, rows, width, 1, values, width, ones, 1, 0, out, 1);
  return true;
}

/**
 * out = a + sign·b over equal lengths, as a copy and one BLAS axpy: ±1·b is exact, so these are the
 * bits of the element-wise sum or difference. False (nothing written) without cblas_saxpy.
 */
export function addArrays(a: Float32Array, b: Float32Array, sign: 1 | -1, out: Float32Array): boolean {
  const saxpy = blas().saxpy;
  if (saxpy === null) return false;
  out.set(a);
  saxpy(out.length, sign, b, 1, out, 1);
  return true;
}
