// Chooses the TensorFlow.js backend that runs the math: `tensorflow` (native libtensorflow, when the
// user could install @tensorflow/tfjs-node[-gpu]) → `webgpu` (a GPU through Dawn) → `blas` (system
// BLAS through FFI) → `wasm` → `cpu`. One log line says which backend runs, on which GPU, and why
// each faster one was skipped.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// Training needs the gradient of every op; tfjs-core alone does not register them, the
// @tensorflow/tfjs bundle does (on the same tfjs-core instance).
import '@tensorflow/tfjs';
import { describeAdapter, registerWebgpu, type GpuAdapter } from './webgpu.ts';

// Production mode: no debug checks and no "install the node backend" banner; the one log line
// below says which backend runs and why.
tf.env().set('PROD', true);

/** The GPU the webgpu backend registered on, once it has. */
let currentAdapter: GpuAdapter | null = null;

export const BACKENDS = ['tensorflow', 'webgpu', 'blas', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];
export type BackendRequest = BackendName | 'auto';

export interface EngineChoice {
  backend: BackendName;
  /** The GPU, on `webgpu`. */
  adapter?: GpuAdapter;
  /** Faster backends that were tried and could not run here, with the reason. */
  skipped: { backend: BackendName; reason: string }[];
}

export interface EngineOptions {
  /** Threads for the BLAS backend; 0 lets the library decide. */
  blasThreads?: number;
  /** webgpu: the adapter to use (--gpu), else the worker's local rank picks one. */
  gpu?: number;
  localRank?: number;
  /** Kernels the model cannot train without; a backend lacking one is skipped (wasm has no Conv2DBackpropFilter). */
  requiredKernels?: string[];
}

export interface EngineLog {
  info(obj: object, msg: string): void;
}

/** Selects and initialises a backend; with `auto`, the first one that works in BACKENDS order. */
export async function selectBackend(request: BackendRequest = 'auto', log?: EngineLog, options: EngineOptions = {}): Promise<EngineChoice> {
  const candidates: readonly BackendName[] = request === 'auto' ? BACKENDS : [request];
  const skipped: EngineChoice['skipped'] = [];
  for (const backend of candidates) {
    const tried = await tryBackend(backend, options, request === backend);
    if (typeof tried !== 'string') {
      const choice: EngineChoice = { backend, skipped, ...tried };
      log?.info(choice, describeChoice(choice));
      return choice;
    }
    skipped.push({ backend, reason: tried });
  }
  const detail = skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ');
  throw new Error(`backend ${request} cannot run here (${detail})`);
}

/** The one line a user reads: "backend wasm (skipped tensorflow: …; blas: …)". */
export function describeChoice(choice: EngineChoice): string {
  const skipped = choice.skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ');
  const on = choice.adapter ? ` on ${describeAdapter(choice.adapter)}` : '';
  return skipped ? `backend ${choice.backend}${on} (skipped ${skipped})` : `backend ${choice.backend}${on}`;
}

/** Initialises one backend; returns what it runs on when it runs, else why it cannot. */
async function tryBackend(backend: BackendName, options: EngineOptions, explicit: boolean): Promise<{ adapter?: GpuAdapter } | string> {
  try {
    if (tf.getBackend() === backend) return { adapter: currentAdapter ?? undefined };
    if (backend === 'tensorflow') await loadNativeTensorflow();
    if (backend === 'webgpu')
      currentAdapter = await registerWebgpu({ gpu: options.gpu, localRank: options.localRank, allowSoftware: explicit });
    if (backend === 'blas') {
      const { registerBlasBackend } = await import('@occam/blas');
      registerBlasBackend({ threads: options.blasThreads ?? 0 });
    }
    if (backend === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend(backend))) return 'initialisation failed';
    await tf.ready();
    const missing = (options.requiredKernels ?? []).filter((kernel) => !tf.getKernel(kernel, backend));
    if (missing.length > 0) return `lacks the ${missing.join(', ')} kernel(s) this model needs`;
    return backend === 'webgpu' ? { adapter: currentAdapter ?? undefined } : {};
  } catch (error) {
    return firstLine(error);
  }
}

/** @tensorflow/tfjs-node-gpu, else @tensorflow/tfjs-node; both are optional installs. */
async function loadNativeTensorflow(): Promise<void> {
  const reasons: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(/* @vite-ignore */ pkg);
      return;
    } catch (error) {
      const missing = (error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND';
      reasons.push(missing ? `${pkg} not installed` : `${pkg}: ${firstLine(error)}`);
    }
  }
  throw new Error(reasons.join(', '));
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0].slice(0, 300);
}
