# PyTorch's samples/s for the same training steps as `npm run bench -- engine`: the MLP
# 784-1024-10 and the CNN (conv u, pool, conv 2u, pool, conv 2u, dense 2u, dense 10), Adam,
# batch 128. Usage: python3 bench/torch_step.py MODEL UNITS BATCH SECONDS THREADS
import sys, time
import torch

model_name, units, batch, seconds, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
torch.manual_seed(0)
if threads > 0:
    torch.set_num_threads(threads)
nn = torch.nn
if model_name == "mlp":
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, units), nn.ReLU(), nn.Dropout(0.2), nn.Linear(units, 10))
else:
    u = units
    model = nn.Sequential(
        nn.Conv2d(1, u, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(u, 2 * u, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * u, 2 * u, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(3 * 3 * 2 * u, 2 * u), nn.ReLU(), nn.Linear(2 * u, 10))
x = torch.rand(batch, 1, 28, 28)
y = torch.randint(0, 10, (batch,))
opt = torch.optim.Adam(model.parameters(), 1e-3)
loss_fn = nn.CrossEntropyLoss()

def step():
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()

for _ in range(3):
    step()
steps, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    step()
    steps += 1
print(f"{batch * steps / (time.perf_counter() - start):.1f}")
