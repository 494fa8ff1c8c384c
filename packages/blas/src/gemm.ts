// Row-major matrix products on Float32Arrays through the system BLAS. Arrays (and subarray views)
// go to C as raw pointers without copying, so a call costs well under a microsecond on top of the math.
import { CBLAS_NO_TRANS, CBLAS_ROW_MAJOR, CBLAS_TRANS, loadBlasLibrary, type SgemmFunction } from './library.ts';

let sgemm: SgemmFunction | null = null;

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
  if (m === 0 || n === 0) return;
  if (k === 0) {
    // BLAS rejects leading dimensions of 0; an empty sum is zero.
    if (!accumulate) c.fill(0, 0, m * n);
    return;
  }
  sgemm ??= loadBlasLibrary().sgemm;
  sgemm(
    CBLAS_ROW_MAJOR,
    transposeA ? CBLAS_TRANS : CBLAS_NO_TRANS,
    transposeB ? CBLAS_TRANS : CBLAS_NO_TRANS,
    m,
    n,
    k,
    1,
    a,
    transposeA ? m : k,
    b,
    transposeB ? k : n,
    accumulate ? 1 : 0,
    c,
    n,
  );
}
