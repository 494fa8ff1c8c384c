// `occam export RUN_DIR --format onnx|tfjs|safetensors-torch [--out DIR]`: the best model of a run
// in a format other tools load. Each format's file writer is its own module; this one reads the
// run's model, writes the files (default RUN_DIR/export/<format>/) and lists them.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { OCCAM_VERSION } from '../common/version.ts';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTrainedModel, type TrainedModel } from '../training/trained.ts';
import { onnxModel } from './onnx.ts';
import { tfjsLayersModel, WEIGHTS_FILE } from './tfjs.ts';
import { torchSafetensors } from './torch.ts';

export const EXPORT_FORMATS = ['onnx', 'tfjs', 'safetensors-torch'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

const TORCH_MODULE = fileURLToPath(new URL('../../docs/occam_torch.py', import.meta.url));

/** Writes the export; returns the paths written. */
export function exportRun(runDir: string, format: ExportFormat, outDir = join(runDir, 'export', format)): string[] {
  const trained = loadTrainedModel(runDir);
  let files: Record<string, string | Uint8Array>;
  try {
    files = exportFiles(trained, format);
  } finally {
    for (const w of trained.weights) w.dispose();
  }
  mkdirSync(outDir, { recursive: true });
  const written = Object.entries(files).map(([name, data]) => {
    writeFileSync(join(outDir, name), data);
    return join(outDir, name);
  });
  if (format === 'safetensors-torch') {
    copyFileSync(TORCH_MODULE, join(outDir, 'occam_torch.py'));
    written.push(join(outDir, 'occam_torch.py'));
  }
  return written;
}

/** The files of one format, by name. */
function exportFiles(trained: TrainedModel, format: ExportFormat): Record<string, string | Uint8Array> {
  switch (format) {
    case 'onnx':
      return { 'model.onnx': onnxModel(trained, OCCAM_VERSION) };
    case 'tfjs': {
      const files = tfjsLayersModel(trained, `occam ${OCCAM_VERSION}`);
      return { 'model.json': files.modelJson, [WEIGHTS_FILE]: files.weights };
    }
    case 'safetensors-torch': {
      const files = torchSafetensors(trained);
      return { 'model.safetensors': files.weights, 'masks.safetensors': files.masks, 'config.json': files.configJson };
    }
  }
}
