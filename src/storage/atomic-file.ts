// Files a reader may open at any moment (config, summary, model, report) are written to a
// temporary name and renamed over the old one, so no reader ever sees half a file.
import { renameSync, writeFileSync } from 'node:fs';

export function writeAtomically(path: string, data: string | Uint8Array): void {
  const temporary = `${path}.tmp-${process.pid}`;
  writeFileSync(temporary, data);
  renameSync(temporary, path);
}
