// Occam's version (package.json), as `occam --version` prints it and exported files record it.
import { readFileSync } from 'node:fs';

export const OCCAM_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;
