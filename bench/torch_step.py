# PyTorch's samples/s for the same training steps as `npm run bench -- engine`: the MLP
# 784-1024-10 and the CNN (conv u, pool, conv 2u, pool, conv 2u, dense 2u, dense 10) at batch 128,
# and the GPT of docs/occam_torch.py (Occam's own layout: fused qkv, pre-norm, tanh GELU), Adam.
# Usage: python3 bench/torch_step.py mlp|cnn BATCH SECONDS THREADS UNITS
#        python3 bench/torch_step.py gpt BATCH SECONDS THREADS WIDTH LAYERS HEADS BLOCK VOCAB
import os, sys, time
import torch

model_name, batch, seconds, threads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
sizes = [int(v) for v in sys.argv[5:]]
torch.manual_seed(0)
if threads > 0:
    torch.set_num_threads(threads)
nn = torch.nn
if model_name == "gpt":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "docs"))
    import occam_torch

    width, layers, heads, block, vocab = sizes
    model = occam_torch.OccamGPT(vocab, block, layers, heads, width)
    x = torch.randint(0, vocab, (batch, block))
    y = torch.randint(0, vocab, (batch * block,))
elif model_name == "mlp":
    units = sizes[0]
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, units), nn.ReLU(), nn.Dropout(0.2), nn.Linear(units, 10))
else:
    u = sizes[0]
    model = nn.Sequential(
        nn.Conv2d(1, u, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(u, 2 * u, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * u, 2 * u, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(3 * 3 * 2 * u, 2 * u), nn.ReLU(), nn.Linear(2 * u, 10))
if model_name != "gpt":
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
opt = torch.optim.Adam(model.parameters(), 1e-3)
loss_fn = nn.CrossEntropyLoss()

def step():
    opt.zero_grad()
    logits = model(x)
    loss_fn(logits.reshape(-1, logits.shape[-1]), y).backward()
    opt.step()

for _ in range(3):
    step()
steps, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    step()
    steps += 1
print(f"{batch * steps / (time.perf_counter() - start):.1f}")
