// Assembles src/common/simd/f32.wat with wabt (from npm) into src/common/simd/f32.generated.ts: the
// module's bytes as base64, so the kernels travel inside any bundle with no file to find at run
// time. `npm run gen:wasm` rewrites the file; a test checks it matches the .wat.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import wabt from 'wabt';

const WAT = fileURLToPath(new URL('../src/common/simd/f32.wat', import.meta.url));
export const GENERATED = fileURLToPath(new URL('../src/common/simd/f32.generated.ts', import.meta.url));

/** The generated module's text. */
export async function generateWasmModule(): Promise<string> {
  const tools = await wabt();
  const parsed = tools.parseWat('f32.wat', readFileSync(WAT, 'utf8'), { simd: true });
  try {
    parsed.validate();
    const { buffer } = parsed.toBinary({ log: false, write_debug_names: false });
    const base64 = Buffer.from(buffer).toString('base64');
    return [
      '// Generated from src/common/simd/f32.wat by scripts/gen-wasm.ts: do not edit. `npm run gen:wasm` rewrites it.',
      '',
      `export const F32_WASM_BASE64 = '${base64}';`,
      '',
    ].join('\n');
  } finally {
    parsed.destroy();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(GENERATED, await generateWasmModule());
}
