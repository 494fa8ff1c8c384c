# PyTorch's figures for `npm run bench -- gpu` on a CUDA GPU: samples/s of the same training steps
# (Adam, dropout 0.2, batch and sizes as bench/gpu.ts) for the MLP, the CNN and a GPT in Occam's
# form (pre-norm blocks, causal attention, GELU MLP, final LayerNorm, untied head), and fp32
# matrix-product TFLOP/s. Prints one JSON line; exits 1 without CUDA.
# Usage: python3 bench/torch_gpu.py full|quick SECONDS
import json, math, sys, time
import torch

quick, seconds = sys.argv[1] == "quick", float(sys.argv[2])
if not torch.cuda.is_available():
    sys.exit(1)
dev = torch.device("cuda")
torch.backends.cuda.matmul.allow_tf32 = False  # fp32, as WebGPU computes
torch.backends.cudnn.allow_tf32 = False
torch.manual_seed(0)
nn = torch.nn


def mlp(units):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, units), nn.ReLU(), nn.Dropout(0.2), nn.Linear(units, 10))


def cnn(u):
    return nn.Sequential(
        nn.Conv2d(1, u, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(u, 2 * u, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * u, 2 * u, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(3 * 3 * 2 * u, 2 * u), nn.ReLU(), nn.Linear(2 * u, 10))


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc, self.out = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        mask = torch.ones(t, t, device=x.device, dtype=torch.bool).tril()
        att = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.heads)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, c))
        return x + self.out(nn.functional.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, vocab, block, layers, heads, width):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Embedding(block, width)
        self.blocks = nn.Sequential(*[Block(width, heads) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        return self.head(self.ln(self.blocks(x)))


def rate(model, x, y, batch, flatten_targets=False):
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        out = model(x)
        loss = loss_fn(out.reshape(-1, out.shape[-1]), y.reshape(-1)) if flatten_targets else loss_fn(out, y)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def matmul(n):
    a, b = torch.rand(n, n, device=dev), torch.rand(n, n, device=dev)
    a @ b
    torch.cuda.synchronize()
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < seconds:
        (a @ b).sum().item()
        count += 1
    return count * 2 * n ** 3 / (time.perf_counter() - start) / 1e12


images = lambda batch: (torch.rand(batch, 1, 28, 28, device=dev), torch.randint(0, 10, (batch,), device=dev))
if quick:
    gpt_shape, mlp_units, cnn_u, cnn_batch, sizes = (32, 2, 2, 64, 8), 256, 8, 32, [256, 512]  # as bench/gpu.ts --quick
else:
    gpt_shape, mlp_units, cnn_u, cnn_batch, sizes = (256, 6, 6, 384, 64), 1024, 32, 128, [2048, 4096, 8192]
block, layers, heads, width, gpt_batch = gpt_shape
tokens = torch.randint(0, 65, (gpt_batch, block + 1), device=dev)
steps = [
    rate(mlp(mlp_units), *images(128), 128),
    rate(cnn(cnn_u), *images(cnn_batch), cnn_batch),
    rate(Gpt(65, block, layers, heads, width), tokens[:, :-1], tokens[:, 1:], gpt_batch, flatten_targets=True),
]
print(json.dumps({"device": torch.cuda.get_device_name(0), "steps": steps, "matmul": {str(n): matmul(n) for n in sizes}}))
