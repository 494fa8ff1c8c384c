// Finds the system BLAS library (OpenBLAS, MKL or any CBLAS) and binds `cblas_sgemm` and the thread
// controls through koffi, so nothing is compiled at install time. Discovery runs once per process;
// the result (or the reason it failed) is cached.
import * as koffi from 'koffi';

/** Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C (CBLAS argument order). */
export type SgemmFunction = (
  order: number,
  transA: number,
  transB: number,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) => void;

/** Row-major single-precision matrix–vector product: y = alpha · op(A) · x + beta · y (CBLAS argument order). */
export type SgemvFunction = (
  order: number,
  trans: number,
  m: number,
  n: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  x: Float32Array,
  incx: number,
  beta: number,
  y: Float32Array,
  incy: number,
) => void;

/** y = alpha · x + y over n floats (CBLAS argument order). */
export type SaxpyFunction = (n: number, alpha: number, x: Float32Array, incx: number, y: Float32Array, incy: number) => void;

/** CBLAS enum values (cblas.h). */
export const CBLAS_ROW_MAJOR = 101;
export const CBLAS_NO_TRANS = 111;
export const CBLAS_TRANS = 112;

export interface BlasLibrary {
  /** The name or path koffi loaded. */
  path: string;
  vendor: 'openblas' | 'mkl' | 'cblas';
  /** Build configuration string, where the library reports one (OpenBLAS). */
  config: string | null;
  sgemm: SgemmFunction;
  /** cblas_sgemv, where the library has it (every CBLAS does; null falls back to the JavaScript loops). */
  sgemv: SgemvFunction | null;
  /** cblas_saxpy, likewise. */
  saxpy: SaxpyFunction | null;
  /** Sets the library's thread count; false when the library has no such control. */
  setThreads(threads: number): boolean;
  /** The library's current thread count, or null when it cannot say. */
  threads(): number | null;
}

/** Library names tried in order when OCCAM_BLAS is not set. */
export const BLAS_LIBRARY_NAMES = ['libopenblas.so.0', 'libopenblas.so', 'libblas.so.3', 'libmkl_rt.so', 'libmkl_rt.so.2'] as const;

const SGEMV_SIGNATURE =
  'void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float *a, int lda, ' +
  'const float *x, int incx, float beta, float *y, int incy)';

const SAXPY_SIGNATURE = 'void cblas_saxpy(int n, float alpha, const float *x, int incx, float *y, int incy)';

const SGEMM_SIGNATURE =
  'void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, ' +
  'const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)';

let cached: { library: BlasLibrary | null; error: string | null } | null = null;

/** The BLAS library, loading it on first use; throws one line saying what was tried and how to fix it. */
export function loadBlasLibrary(): BlasLibrary {
  const { library, error } = discover();
  if (library === null) throw new Error(error ?? 'no BLAS library found');
  return library;
}

/** The BLAS library, or null when none can be loaded (for callers that only ask). */
export function findBlasLibrary(): BlasLibrary | null {
  return discover().library;
}

function discover(): { library: BlasLibrary | null; error: string | null } {
  if (cached !== null) return cached;
  const override = process.env.OCCAM_BLAS?.trim();
  const candidates = override ? [override] : [...BLAS_LIBRARY_NAMES];
  const tried: string[] = [];
  for (const candidate of candidates) {
    const outcome = tryLoad(candidate);
    if (typeof outcome !== 'string') {
      cached = { library: outcome, error: null };
      return cached;
    }
    tried.push(`${override ? 'OCCAM_BLAS=' : ''}${candidate}${outcome ? ` (${outcome})` : ''}`);
  }
  const error =
    `no BLAS library found (tried ${tried.join(', ')}); ` +
    'install one with `apt-get install libopenblas0` or set OCCAM_BLAS to the path of a CBLAS library';
  cached = { library: null, error };
  return cached;
}

/** Loads one candidate; returns the library, or a short reason ('' when the file is simply absent). */
function tryLoad(candidate: string): BlasLibrary | string {
  let handle: koffi.LibraryHandle;
  try {
    handle = koffi.load(candidate);
  } catch {
    return '';
  }
  let sgemm: SgemmFunction;
  try {
    sgemm = handle.func(SGEMM_SIGNATURE) as SgemmFunction;
  } catch {
    // A plain Fortran BLAS (e.g. reference libblas.so.3 without CBLAS) has no cblas_sgemm.
    handle.unload();
    return 'no cblas_sgemm';
  }
  const openblasSet = optionalFunc(handle, 'void openblas_set_num_threads(int threads)');
  const openblasGet = optionalFunc(handle, 'int openblas_get_num_threads()');
  const openblasConfig = optionalFunc(handle, 'const char *openblas_get_config()');
  const mklSet = optionalFunc(handle, 'void MKL_Set_Num_Threads(int threads)');
  const mklGet = optionalFunc(handle, 'int MKL_Get_Max_Threads()');
  const setThreadsNative = openblasSet ?? mklSet;
  const getThreadsNative = openblasGet ?? mklGet;
  return {
    path: candidate,
    vendor: openblasSet ? 'openblas' : mklSet ? 'mkl' : 'cblas',
    config: openblasConfig ? String(openblasConfig()) : null,
    sgemm,
    sgemv: optionalFunc(handle, SGEMV_SIGNATURE) as SgemvFunction | null,
    saxpy: optionalFunc(handle, SAXPY_SIGNATURE) as SaxpyFunction | null,
    setThreads(threads: number): boolean {
      if (!setThreadsNative) return false;
      setThreadsNative(threads);
      return true;
    },
    threads(): number | null {
      return getThreadsNative ? Number(getThreadsNative()) : null;
    },
  };
}

type NativeFunction = (...args: number[]) => unknown;

function optionalFunc(handle: koffi.LibraryHandle, signature: string): NativeFunction | null {
  try {
    return handle.func(signature) as NativeFunction;
  } catch {
    return null;
  }
}
