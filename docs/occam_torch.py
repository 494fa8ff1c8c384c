"""Occam's three networks as plain torch.nn modules, for models exported with
`occam export RUN_DIR --format safetensors-torch` (this file is copied beside them).

    import occam_torch
    model = occam_torch.load("runs/<run>/export/safetensors-torch")   # eval mode, masks applied
    logits = model(x)   # x as Occam takes it: images [N, H, W, C] in [0, 1], rows [N, F], tokens [N, T]

`load(..., prune_masks=True)` re-applies the pruning masks with torch.nn.utils.prune, so fine-tuning
keeps the pruned weights at zero. Needs torch and safetensors (or torch alone: a small reader
below is used when the safetensors package is missing).
"""

import json
import math
import os
import struct

import torch
from torch import nn
from torch.nn import functional as F


class OccamMLP(nn.Module):
    """input → Linear(units) → ReLU → Linear(classes); dropout is training-only and left out."""

    def __init__(self, input_shape, units, classes):
        super().__init__()
        self.hidden = nn.Linear(math.prod(input_shape), units)
        self.output = nn.Linear(units, classes)

    def forward(self, x):
        return self.output(F.relu(self.hidden(x.flatten(1))))


class OccamCNN(nn.Module):
    """conv u → pool → conv 2u → pool → conv 2u → dense 2u → dense classes (3×3 valid, ReLU)."""

    def __init__(self, input_shape, units, classes):
        super().__init__()
        height, width, channels = input_shape
        self.conv1 = nn.Conv2d(channels, units, 3)
        self.conv2 = nn.Conv2d(units, 2 * units, 3)
        self.conv3 = nn.Conv2d(2 * units, 2 * units, 3)
        side = lambda n: ((n - 2) // 2 - 2) // 2 - 2  # noqa: E731
        self.dense = nn.Linear(side(height) * side(width) * 2 * units, 2 * units)
        self.output = nn.Linear(2 * units, classes)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)  # Occam's images are NHWC
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x))
        x = x.permute(0, 2, 3, 1).flatten(1)  # Occam flattens NHWC
        return self.output(F.relu(self.dense(x)))


class LayerNorm(nn.Module):
    """nanoGPT's LayerNorm with an optional bias (torch.nn.LayerNorm takes bias= only from PyTorch 2.1)."""

    def __init__(self, width, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class Attention(nn.Module):
    def __init__(self, width, heads, bias):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=bias)  # query, key, value side by side
        self.output = nn.Linear(width, width, bias=bias)

    def forward(self, x):
        n, t, c = x.shape
        split = lambda y: y.view(n, t, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = (split(y) for y in self.qkv(x).split(c, dim=2))
        scores = q @ k.transpose(-2, -1) / math.sqrt(c // self.heads)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, t, c)
        return self.output(mixed)


class Mlp(nn.Module):
    def __init__(self, width, bias):
        super().__init__()
        self.fc = nn.Linear(width, 4 * width, bias=bias)
        self.proj = nn.Linear(4 * width, width, bias=bias)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, width, heads, bias):
        super().__init__()
        self.ln_1 = LayerNorm(width, bias)
        self.attn = Attention(width, heads, bias)
        self.ln_2 = LayerNorm(width, bias)
        self.mlp = Mlp(width, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class OccamGPT(nn.Module):
    """nanoGPT's layout: token + position embeddings, pre-norm blocks, final LayerNorm, LM head."""

    def __init__(self, vocab_size, block_size, layers, heads, width, bias=True, tie_embeddings=False):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, width)
        self.wpe = nn.Embedding(block_size, width)
        self.h = nn.ModuleList([Block(width, heads, bias) for _ in range(layers)])
        self.ln_f = LayerNorm(width, bias)
        self.tie_embeddings = tie_embeddings
        if not tie_embeddings:
            self.lm_head = nn.Linear(width, vocab_size, bias=False)

    def forward(self, tokens):
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.wte(tokens) + self.wpe(positions)
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        return x @ self.wte.weight.T if self.tie_embeddings else self.lm_head(x)


def build(config):
    """The module a config.json of the export describes."""
    kind = config["kind"]
    if kind == "mlp":
        return OccamMLP(config["input_shape"], config["units"], config["classes"])
    if kind == "cnn":
        return OccamCNN(config["input_shape"], config["units"], config["classes"])
    if kind == "gpt":
        return OccamGPT(
            config["vocab_size"],
            config["block_size"],
            config["layers"],
            config["heads"],
            config["width"],
            config.get("bias", True),
            config.get("tie_embeddings", False),
        )
    raise ValueError(f"unknown Occam model kind {kind!r}")


def load(directory, prune_masks=False):
    """The exported model, in eval mode; prune_masks=True keeps pruned weights at zero in training."""
    with open(os.path.join(directory, "config.json")) as file:
        model = build(json.load(file))
    model.load_state_dict(read_safetensors(os.path.join(directory, "model.safetensors")))
    if prune_masks:
        from torch.nn.utils import prune

        modules = dict(model.named_modules())
        for name, mask in read_safetensors(os.path.join(directory, "masks.safetensors")).items():
            module_name, parameter = name.rsplit(".", 1)
            prune.custom_from_mask(modules[module_name], parameter, mask.bool())
    return model.eval()


def read_safetensors(path):
    """A safetensors file as a dict of tensors (the safetensors package when installed)."""
    try:
        from safetensors.torch import load_file

        return load_file(path)
    except ImportError:
        pass
    dtypes = {"F32": torch.float32, "U8": torch.uint8, "I32": torch.int32}
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
        data = file.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=dtypes[entry["dtype"]])
        tensors[name] = flat.reshape(entry["shape"])
    return tensors
