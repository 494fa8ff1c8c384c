// Worker threads that run a TypeScript module of this folder: the thread registers the TypeScript
// loader (as bin/occam.mjs does), then imports the module. The liveness and ring threads start so.
import { Worker as Thread } from 'node:worker_threads';

/** Starts `module` (a file of src/worker/, e.g. 'ring-thread.ts') in a new thread with `data` as its workerData. */
export function startThread(module: string, data: unknown): Thread {
  const bootstrap = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})
  .then(({ register }) => { register(); return import(${JSON.stringify(new URL(`./${module}`, import.meta.url).href)}); })`;
  return new Thread(bootstrap, { eval: true, workerData: data });
}
