// Where the webgpu tests find a Vulkan driver: the lavapipe that scripts/install-lavapipe.sh (run
// by .ci/run) unpacks into .cache/lavapipe. Its environment must be set when a process starts.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const DIR = fileURLToPath(new URL('../../.cache/lavapipe/', import.meta.url));

/** The environment that runs `webgpu` on lavapipe, or null when it is not installed. */
export function lavapipeEnv(): Record<string, string> | null {
  const icd = `${DIR}lvp_icd.json`;
  if (!existsSync(icd)) return null;
  return { VK_DRIVER_FILES: icd, LD_LIBRARY_PATH: `${DIR}usr/lib/x86_64-linux-gnu` };
}

export const NO_LAVAPIPE = 'no lavapipe in .cache/lavapipe: run scripts/install-lavapipe.sh (.ci/run does)';
