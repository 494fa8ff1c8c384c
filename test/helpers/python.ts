// The python3 that has PyTorch: Debian's python3-torch lives under /usr/bin/python3, which a pyenv
// or venv python3 earlier on PATH may hide. Null when none has it (tests skip, benchmarks say so).
import { spawnSync } from 'node:child_process';

export function pythonWithTorch(): string | null {
  for (const python of ['/usr/bin/python3', 'python3']) {
    if (spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0) return python;
  }
  return null;
}
