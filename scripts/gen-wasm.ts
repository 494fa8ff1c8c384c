// Assembles the repository's WebAssembly text modules with wabt (from npm) into TypeScript files
// holding each module's bytes as base64, so the kernels travel inside any bundle with no file to
// find at run time: src/common/simd/f32.wat (Occam's host loops) and packages/blas/src/loops.wat
// (the blas backend's pooling, im2col and epilogue). `npm run gen:wasm` rewrites them; a test checks they match.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import wabt from 'wabt';

/** Each module: its text, the file generated from it, and the constant that file exports. */
export const WASM_MODULES = [
  { wat: '../src/common/simd/f32.wat', generated: '../src/common/simd/f32.generated.ts', constant: 'F32_WASM_BASE64' },
  { wat: '../packages/blas/src/loops.wat', generated: '../packages/blas/src/loops.generated.ts', constant: 'LOOPS_WASM_BASE64' },
].map((m) => ({ ...m, wat: path(m.wat), generated: path(m.generated) }));

/** The generated text for the module assembled from `wat`. */
export async function generateWasmModule(wat: string, constant: string): Promise<string> {
  const tools = await wabt();
  const name = wat.slice(ROOT.length);
  const parsed = tools.parseWat(name, readFileSync(wat, 'utf8'), { simd: true, bulk_memory: true });
  try {
    parsed.validate();
    const { buffer } = parsed.toBinary({ log: false, write_debug_names: false });
    const base64 = Buffer.from(buffer).toString('base64');
    return [
      `// Generated from ${name} by scripts/gen-wasm.ts: do not edit. \`npm run gen:wasm\` rewrites it.`,
      '',
      `export const ${constant} = '${base64}';`,
      '',
    ].join('\n');
  } finally {
    parsed.destroy();
  }
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));

function path(relative: string): string {
  return fileURLToPath(new URL(relative, import.meta.url));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const { wat, generated, constant } of WASM_MODULES) writeFileSync(generated, await generateWasmModule(wat, constant));
}
