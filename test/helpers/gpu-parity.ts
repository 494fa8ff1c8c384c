// Run as a child process with the Vulkan driver in its environment (webgpu.test.ts): prints one
// JSON line with the adapter and, per model, the parity of webgpu's loss and gradients with cpu's.
import { gradientParity } from '../../bench/_parity.ts';
import { selectBackend } from '../../src/training/engine.ts';

const report = await gradientParity();
const choice = await selectBackend('webgpu');
process.stdout.write(`${JSON.stringify({ adapter: choice.adapter, ...report })}\n`);
