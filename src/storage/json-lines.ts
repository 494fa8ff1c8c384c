// JSON Lines files a run appends to (metrics.jsonl, events.jsonl): read back with a truncated or
// unparsable line (a crash mid-write) skipped, and a missing file read as empty.
import { existsSync, readFileSync } from 'node:fs';

export function readJsonLines<T>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as T];
      } catch {
        return [];
      }
    });
}
