// The `webgpu` backend in Node: Dawn (the npm package `webgpu`, Chromium's WebGPU engine, on
// Vulkan) under TensorFlow.js's WebGPU backend. It picks the adapter (GPU) before the backend
// registers, says which one it got, and tells a hardware GPU from a software rasteriser
// (lavapipe/llvmpipe, SwiftShader), which `auto` must not pick.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface GpuAdapter {
  vendor: string;
  architecture: string;
  description: string;
  /** A CPU implementation of WebGPU (lavapipe, llvmpipe, SwiftShader): correct, not fast. */
  software: boolean;
}

export interface WebgpuOptions {
  /** Which of the machine's adapters, in Dawn's order (--gpu); without, the worker's rank modulo their count. */
  gpu?: number;
  /** This worker's rank on its machine (`occam train` gives worker r the r-th GPU). */
  localRank?: number;
  /** Take a software adapter too (an explicit --backend webgpu); `auto` does not. */
  allowSoftware: boolean;
}

/** Dawn's handles: each must stay referenced for as long as the backend runs on it. */
const DAWN = new Set<unknown>();

/** Finds the adapter, registers TF.js's webgpu backend on it, and returns what it is; throws one line why not. */
export async function registerWebgpu(options: WebgpuOptions): Promise<GpuAdapter> {
  requireVulkanLoader();
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  // Dawn lists the adapters only when asked for one that does not exist; the first needs no list.
  const wanted = options.gpu ?? options.localRank ?? 0;
  const names = wanted > 0 ? await adapterNames(create) : [];
  const index = options.gpu ?? wanted % Math.max(1, names.length);
  if (index >= Math.max(1, names.length)) throw new Error(`no GPU ${index}: Dawn sees ${names.length} (${names.join('; ') || 'none'})`);
  const name = names[index];
  if (name !== undefined && names.indexOf(name) !== index) {
    throw new Error(
      `GPUs ${names.indexOf(name)} and ${index} are both '${name}', which Dawn cannot tell apart: give each worker one GPU (one per pod, or NVIDIA_VISIBLE_DEVICES)`,
    );
  }
  const gpu = create(name !== undefined && index > 0 ? [`adapter=${name}`] : []);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter (is a Vulkan driver installed? VK_DRIVER_FILES names one)');
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const found: GpuAdapter = {
    vendor: info.vendor,
    architecture: info.architecture,
    description: info.description || info.device,
    software:
      info.isFallbackAdapter === true ||
      /software|cpu|llvmpipe|lavapipe|swiftshader/i.test(`${info.architecture} ${info.description} ${info.device}`),
  };
  if (found.software && !options.allowSoftware)
    throw new Error(`only a software adapter (${found.description}); --backend webgpu takes it`);
  // TF.js's backend asks navigator.gpu for its adapter when it is imported and set.
  DAWN.add(gpu);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  await import('@tensorflow/tfjs-backend-webgpu');
  return found;
}

/** Where the dynamic linker looks for libvulkan.so.1 on Debian/Ubuntu/RHEL-style systems, after LD_LIBRARY_PATH. */
const LIBRARY_DIRS = ['/usr/lib/x86_64-linux-gnu', '/lib/x86_64-linux-gnu', '/usr/lib64', '/lib64', '/usr/lib', '/usr/local/lib'];

/** Dawn reaches GPUs through Vulkan: without its loader there is nothing to find (and Dawn would say so on stderr). */
function requireVulkanLoader(): void {
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), ...LIBRARY_DIRS];
  if (!dirs.some((dir) => existsSync(join(dir, 'libvulkan.so.1')))) {
    throw new Error('libvulkan.so.1 not found (apt-get install libvulkan1, or set LD_LIBRARY_PATH)');
  }
}

/** One line naming an adapter, for the backend log line. */
export function describeAdapter(adapter: GpuAdapter): string {
  return `${adapter.description} (${[adapter.vendor, adapter.architecture].filter(Boolean).join(', ')}${adapter.software && adapter.architecture !== 'software' ? ', software' : ''})`;
}

/** The adapters' names in Dawn's order, read from the list Dawn gives when asked for none that exists. */
async function adapterNames(create: (options: string[]) => GPU): Promise<string[]> {
  try {
    await create(['adapter=occam-list-adapters']).requestAdapter();
  } catch (error) {
    return [...String((error as Error).message).matchAll(/name: '([^']*)'/g)].map((m) => m[1]);
  }
  return [];
}
