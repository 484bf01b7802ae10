#!/usr/bin/python3
"""Train and export the OnnxViTQ reference models on Fashion-MNIST.

Run with Debian's interpreter (python3-torch, python3-torchvision, python3-onnx,
dataset-fashion-mnist):

    /usr/bin/python3 tools/zoo/zoo.py data                 # calibration/eval subsets
    /usr/bin/python3 tools/zoo/zoo.py unlabelled           # 2048 test-split images outside the eval subset, no labels (auto's held-out pool)
    /usr/bin/python3 tools/zoo/zoo.py train vit --minutes 25
    /usr/bin/python3 tools/zoo/zoo.py train deit --minutes 25
    /usr/bin/python3 tools/zoo/zoo.py train swin --minutes 25
    /usr/bin/python3 tools/zoo/zoo.py train hybrid --minutes 12 --out models/exports   # CNN-transformer hybrid
    /usr/bin/python3 tools/zoo/zoo.py deit-tiny            # DeiT-Tiny-shaped random model + 256 images (benchmarks)
    /usr/bin/python3 tools/zoo/zoo.py test-split           # the whole 10 000-image test split (bench --eval-images)
    /usr/bin/python3 tools/zoo/zoo.py constant-nodes models/vit.opset13.onnx models/exports/vit-constant-nodes.opset13.onnx
    /usr/bin/python3 tools/zoo/zoo.py reexport vit --opsets 9 11   # committed weights, older opsets

`train` writes <out>/<name>.opset17.onnx (LayerNormalization op) and
<out>/<name>.opset13.onnx (LayerNorm decomposed by the exporter), plus <name>.json with the
training record. `--family-variant alt` builds a differently sized member of the same family
with another seed; those are used to check that the compiler is not tuned to the committed files
and are not committed.

Every model takes float32 NCHW [N,3,28,28]: the grey image replicated to 3 channels (as an RGB
export from timm/torchvision would see it), scaled to [0,1], then (x - mean) / std.
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import Encoder, VisionTransformer

DATASET = "/usr/share/datasets/fashion-mnist"
MEAN = 0.2860
STD = 0.3530
IMAGE = 28
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(name):
    with gzip.open(os.path.join(DATASET, name), "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(train):
    prefix = "train" if train else "t10k"
    return read_idx(f"{prefix}-images-idx3-ubyte.gz"), read_idx(f"{prefix}-labels-idx1-ubyte.gz")


def preprocess(images_u8):
    """uint8 [N,28,28] -> float32 [N,3,28,28], the models' input contract."""
    x = torch.from_numpy(images_u8.astype(np.float32) / 255.0)
    x = (x - MEAN) / STD
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


# ---------------------------------------------------------------- models

class DeiT(VisionTransformer):
    """DeiT-style ViT on torchvision's VisionTransformer: class token + distillation token,
    two heads; at inference the two heads' logits are averaged (as in DeiT)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        hidden = kw["hidden_dim"]
        seq = (kw["image_size"] // kw["patch_size"]) ** 2 + 2
        self.encoder = Encoder(seq, kw["num_layers"], kw["num_heads"], hidden, kw["mlp_dim"],
                               kw.get("dropout", 0.0), kw.get("attention_dropout", 0.0),
                               self.norm_layer)
        self.dist_token = nn.Parameter(torch.zeros(1, 1, hidden))
        nn.init.trunc_normal_(self.dist_token, std=0.02)
        self.head_dist = nn.Linear(hidden, self.num_classes)

    def forward_both(self, x):
        x = self._process_input(x)
        n = x.shape[0]
        x = torch.cat([self.class_token.expand(n, -1, -1), self.dist_token.expand(n, -1, -1), x], dim=1)
        x = self.encoder(x)
        return self.heads(x[:, 0]), self.head_dist(x[:, 1])

    def forward(self, x):
        cls, dist = self.forward_both(x)
        return (cls + dist) / 2


class TeacherCNN(nn.Module):
    """Small convnet teacher for DeiT's hard distillation (DeiT distils from a convnet)."""

    def __init__(self):
        super().__init__()
        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.MaxPool2d(2))
        self.body = nn.Sequential(block(3, 32), block(32, 64), block(64, 128))
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1×1 expansion, depthwise 3×3, 1×1 linear projection; BatchNorm after
    each convolution (folded into the convolutions by the exporter); residual when shapes allow."""

    def __init__(self, cin, cout, expand, stride, act):
        super().__init__()
        hidden = cin * expand
        self.body = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act(),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), act(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class Hybrid(nn.Module):
    """A CNN-transformer hybrid (MobileViT / LeViT-like): a convolutional stem with hard-swish,
    three inverted-residual blocks (ReLU in the first, hard-swish after: the two cases of
    cross-layer equalization), a 1×1 convolution to tokens (7×7 = 49) with a learned position
    embedding, transformer encoder blocks (LayerNorm, multi-head attention, GELU MLP), a final
    LayerNorm, the mean over tokens and a linear head."""

    def __init__(self, num_classes=10, stem=16, widths=(24, 24, 48), dim=64, heads=4, mlp=128, layers=2):
        super().__init__()
        from torchvision.models.vision_transformer import EncoderBlock
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.Hardswish())
        self.blocks = nn.Sequential(
            InvertedResidual(stem, widths[0], 2, 2, nn.ReLU),
            InvertedResidual(widths[0], widths[1], 3, 1, nn.Hardswish),
            InvertedResidual(widths[1], widths[2], 2, 2, nn.Hardswish))
        self.to_tokens = nn.Conv2d(widths[2], dim, 1)
        self.pos_embedding = nn.Parameter(torch.empty(1, (IMAGE // 4) ** 2, dim).normal_(std=0.02))
        self.encoder = nn.Sequential(*[EncoderBlock(heads, dim, mlp, 0.0, 0.0) for _ in range(layers)])
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.to_tokens(self.blocks(self.stem(x)))
        x = x.flatten(2).transpose(1, 2) + self.pos_embedding
        x = self.ln(self.encoder(x))
        return self.head(x.mean(dim=1))


# Two members per family: `main` is committed, `alt` is trained separately (other size and seed)
# to check that quantization generalises beyond the committed files.
CONFIGS = {
    "vit": {
        "main": dict(image_size=IMAGE, patch_size=4, num_layers=6, num_heads=4, hidden_dim=128, mlp_dim=256),
        "alt": dict(image_size=IMAGE, patch_size=4, num_layers=4, num_heads=3, hidden_dim=96, mlp_dim=384),
    },
    "deit": {
        "main": dict(image_size=IMAGE, patch_size=4, num_layers=6, num_heads=3, hidden_dim=96, mlp_dim=384),
        "alt": dict(image_size=IMAGE, patch_size=7, num_layers=6, num_heads=4, hidden_dim=128, mlp_dim=512),
    },
    "swin": {
        "main": dict(patch_size=[2, 2], embed_dim=32, depths=[2, 2, 2], num_heads=[2, 4, 8], window_size=[7, 7]),
        "alt": dict(patch_size=[2, 2], embed_dim=24, depths=[2, 4], num_heads=[3, 6], window_size=[7, 7]),
    },
    "hybrid": {
        "main": dict(stem=16, widths=(24, 24, 48), dim=64, heads=4, mlp=128, layers=2),
        "alt": dict(stem=24, widths=(32, 32, 64), dim=96, heads=4, mlp=192, layers=2),
    },
}


def build(family, variant):
    cfg = dict(CONFIGS[family][variant])
    if family == "vit":
        return VisionTransformer(num_classes=10, **cfg), cfg
    if family == "deit":
        return DeiT(num_classes=10, **cfg), cfg
    if family == "swin":
        return SwinTransformer(num_classes=10, stochastic_depth_prob=0.1, **cfg), cfg
    if family == "hybrid":
        return Hybrid(num_classes=10, **cfg), cfg
    raise SystemExit(f"unknown family {family}")


# ---------------------------------------------------------------- training

def augment(x):
    """Random crop (pad 2) + horizontal flip, on a preprocessed batch."""
    n = x.shape[0]
    flip = torch.rand(n) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (2, 2, 2, 2), value=(0 - MEAN) / STD)
    dx, dy = np.random.randint(0, 5, size=2)
    return padded[:, :, dy:dy + IMAGE, dx:dx + IMAGE]


def evaluate(model, x, y, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def fit(model, x, y, minutes, lr, batch, loss_fn, log_prefix):
    """AdamW + warmup/cosine on a wall-clock budget: the schedule is stretched to the number of
    steps that fit in `minutes`, estimated from the first steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    n = len(x)
    steps_per_epoch = n // batch
    # time a few steps to size the schedule
    model.train()
    t0 = time.time()
    probe = 10
    for i in range(probe):
        idx = torch.randint(0, n, (batch,))
        loss = loss_fn(model, augment(x[idx]), y[idx], idx)
        opt.zero_grad(); loss.backward(); opt.step()
    per_step = (time.time() - t0) / probe
    total = max(steps_per_epoch, int(minutes * 60 / per_step))
    warmup = max(1, total // 20)
    print(f"{log_prefix}: {per_step*1000:.0f} ms/step, {total} steps = {total/steps_per_epoch:.1f} epochs",
          flush=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    step = 0
    start = time.time()
    while step < total:
        perm = torch.randperm(n)
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[b * batch:(b + 1) * batch]
            model.train()
            loss = loss_fn(model, augment(x[idx]), y[idx], idx)
            opt.zero_grad(); loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(); sched.step(); step += 1
            if step % 200 == 0:
                print(f"{log_prefix}: step {step}/{total} loss {loss.item():.3f} "
                      f"{(time.time()-start)/60:.1f} min", flush=True)
    return step / steps_per_epoch


def train_teacher(x, y, minutes, seed):
    torch.manual_seed(seed)
    teacher = TeacherCNN()
    def loss_fn(m, xb, yb, idx):
        return F.cross_entropy(m(xb), yb, label_smoothing=0.1)
    fit(teacher, x, y, minutes, 2e-3, 128, loss_fn, "teacher")
    teacher.eval()
    # hard labels of the teacher on the un-augmented training images (DeiT hard distillation;
    # computing once keeps the ViT's training cost unchanged)
    with torch.no_grad():
        labels = torch.cat([teacher(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return teacher, labels


# ---------------------------------------------------------------- export

def export(model, path, opset, fold=True, dynamic=True):
    model.eval()
    dummy = torch.zeros(1, 3, IMAGE, IMAGE)
    axes = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    # Keep grad enabled so nn.MultiheadAttention takes its decomposed (exportable) path rather than
    # the fused _native_multi_head_attention kernel, which has no ONNX symbolic.
    with torch.enable_grad():
        torch.onnx.export(model, dummy, path, opset_version=opset, input_names=["pixel_values"],
                          output_names=["logits"], dynamic_axes=axes, do_constant_folding=fold)


def add_metadata(path, family, variant, record):
    import onnx
    m = onnx.load(path)
    meta = {
        "onnxvitq.preprocess.size": str(IMAGE),
        "onnxvitq.preprocess.channels": "3",
        "onnxvitq.preprocess.mean": ",".join([str(MEAN)] * 3),
        "onnxvitq.preprocess.std": ",".join([str(STD)] * 3),
        "onnxvitq.dataset": "fashion-mnist",
        "onnxvitq.family": family,
        "onnxvitq.variant": variant,
        "onnxvitq.fp32_top1_torch": f"{record['test_top1']:.4f}",
    }
    for k, v in meta.items():
        p = m.metadata_props.add(); p.key = k; p.value = v
    m.producer_name = "pytorch"  # keep the exporter's identity; onnx.save below rewrites nothing else
    onnx.checker.check_model(m)
    onnx.save(m, path)


def save_golden(model, path):
    """PyTorch logits for the first 16 evaluation images, so the C# tests can check that the
    ONNX export (run by ONNX Runtime) computes what the PyTorch module computed."""
    ti, tl = load_split(False)
    model.eval()
    with torch.no_grad():
        logits = model(preprocess(ti[:16])).numpy().astype(np.float32)
    np.save(path, logits)


def cmd_train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed); np.random.seed(args.seed)
    xi, yi = load_split(True)
    ti, tl = load_split(False)
    x, y = preprocess(xi), torch.from_numpy(yi.astype(np.int64))
    xt, yt = preprocess(ti), torch.from_numpy(tl.astype(np.int64))
    model, cfg = build(args.family, args.variant)
    params = sum(p.numel() for p in model.parameters())
    name = args.name or (args.family if args.variant == "main" else f"{args.family}_{args.variant}")
    print(f"{name}: {params/1e6:.2f} M parameters, config {cfg}", flush=True)
    record = {"family": args.family, "variant": args.variant, "config": cfg, "seed": args.seed,
              "parameters": params}

    if args.family == "deit":
        tmin = args.minutes * 0.15
        teacher, teacher_labels = train_teacher(x, y, tmin, args.seed + 1)
        record["teacher_test_top1"] = evaluate(teacher, xt, yt)
        print(f"teacher test top-1 {record['teacher_test_top1']:.4f}", flush=True)
        minutes = args.minutes - tmin

        def loss_fn(m, xb, yb, idx):
            cls, dist = m.forward_both(xb)
            return 0.5 * F.cross_entropy(cls, yb, label_smoothing=0.1) + \
                0.5 * F.cross_entropy(dist, teacher_labels[idx])
    else:
        minutes = args.minutes

        def loss_fn(m, xb, yb, idx):
            return F.cross_entropy(m(xb), yb, label_smoothing=0.1)

    t0 = time.time()
    epochs = fit(model, x, y, minutes, args.lr, args.batch, loss_fn, name)
    record["epochs"] = round(epochs, 2)
    record["train_minutes"] = round((time.time() - t0) / 60, 1)
    record["test_top1"] = evaluate(model, xt, yt)
    print(f"{name}: test top-1 {record['test_top1']:.4f} after {epochs:.1f} epochs", flush=True)

    os.makedirs(args.out, exist_ok=True)
    if args.keep_checkpoint:
        torch.save(model.state_dict(), os.path.join(args.out, f"{name}.pt"))
    for opset in (17, 13):
        path = os.path.join(args.out, f"{name}.opset{opset}.onnx")
        export(model, path, opset)
        add_metadata(path, args.family, args.variant, record)
        record[f"opset{opset}_bytes"] = os.path.getsize(path)
    if args.variant == "alt":
        # Export settings users also pick: no constant folding (weights reach MatMul through
        # Transpose nodes) and a fixed batch of 1.
        for suffix, kw in (("nofold", dict(fold=False)), ("static", dict(dynamic=False))):
            path = os.path.join(args.out, f"{name}.{suffix}.opset17.onnx")
            export(model, path, 17, **kw)
            add_metadata(path, args.family, args.variant, record)
    save_golden(model, os.path.join(args.out, f"{name}.golden_logits.npy"))
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(record, f, indent=2)
    print(json.dumps(record), flush=True)


def cmd_export(args):
    """Re-export a kept checkpoint (tools/zoo/zoo.py train --keep-checkpoint)."""
    model, _ = build(args.family, args.variant)
    name = args.name or (args.family if args.variant == "main" else f"{args.family}_{args.variant}")
    model.load_state_dict(torch.load(os.path.join(args.out, f"{name}.pt")))
    with open(os.path.join(args.out, f"{name}.json")) as f:
        record = json.load(f)
    for opset in (17, 13):
        path = os.path.join(args.out, f"{name}.opset{opset}.onnx")
        export(model, path, opset)
        add_metadata(path, args.family, args.variant, record)
    save_golden(model, os.path.join(args.out, f"{name}.golden_logits.npy"))


def initializer_sources(model, path):
    """For an export of `model` at `path`: initializer name -> (parameter name, transform), where
    the initializer equals transform(parameter). Found by value on `model`'s own (random) weights:
    constant folding renames transposed MatMul weights and turns Swin's relative position table into
    its gathered bias, so names alone do not lead back to the state dict."""
    import onnx
    from onnx import numpy_helper
    params = {k: v.detach().numpy() for k, v in model.state_dict().items() if v.dtype == torch.float32}
    biases = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "get_relative_position_bias"):
            with torch.no_grad():
                biases[name + ".relative_position_bias_table"] = mod.get_relative_position_bias().numpy()
    sources = {}
    for t in onnx.load(path).graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype != np.float32 or a.size < 2:
            continue
        if t.name in params and params[t.name].shape == a.shape and np.array_equal(params[t.name], a):
            sources[t.name] = (t.name, "same")
            continue
        found = None
        for k, v in params.items():
            if v.ndim == 2 and v.T.shape == a.shape and np.array_equal(v.T, a):
                found = (k, "transpose"); break
        if found is None:
            for k, v in biases.items():
                if v.size == a.size and np.array_equal(v.reshape(a.shape), a):
                    found = (k, "bias"); break
        if found is not None:
            sources[t.name] = found
    return sources


def load_from_export(model, path, probe_path):
    """Loads the weights of the export at `path` into `model`: `probe_path` is a fresh export of the
    same (randomly initialised) module with the same settings, whose initializer names match."""
    import onnx
    from onnx import numpy_helper
    sources = initializer_sources(model, probe_path)
    probe = {t.name: t for t in onnx.load(probe_path).graph.initializer}
    trained = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    if set(probe) != set(trained):
        raise SystemExit(f"{path}: initializer names differ from a fresh export of the same module")
    state = model.state_dict()
    loaded = set()
    for init, (param, how) in sources.items():
        a = torch.from_numpy(trained[init].copy())
        if how == "same":
            state[param].copy_(a)
        elif how == "transpose":
            state[param].copy_(a.T)
        else:
            # gathered bias [1, heads, N, N] -> table rows: every table entry is some window pair
            mod = model.get_submodule(param.rsplit(".", 1)[0])
            heads = mod.relative_position_bias_table.shape[1]
            idx = mod.relative_position_index.reshape(-1)
            rows = a.reshape(heads, -1).T
            table = state[param]
            table[idx] = rows
            if torch.unique(idx).numel() != table.shape[0]:
                raise SystemExit(f"{param}: the gathered bias does not cover every table row")
        loaded.add(param)
    left = [k for k, v in state.items() if v.dtype == torch.float32 and k not in loaded and v.numel() > 1
            and not k.endswith("relative_position_index")]
    if left:
        raise SystemExit(f"{path}: parameters not found in the export: {left}")
    model.load_state_dict(state)


def cmd_reexport(args):
    """Re-exports a committed model at another opset (9 and 11: what older exporters and tools
    produce) from its own weights: the module is rebuilt, the weights are read back from the
    committed opset-17 export, checked against the committed golden logits, and exported again.
    PyTorch 1.13 writes opset 7–17; 18 and later come from `onnxvitq convert`."""
    import tempfile
    torch.manual_seed(0)
    model, _ = build(args.family, "main")
    # Distinct random values in every parameter: the exporter merges equal initializers (fresh
    # LayerNorm weights are all ones), which would hide which parameter each one came from.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    source = os.path.join(args.models, f"{args.family}.opset17.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        probe = os.path.join(tmp, "probe.onnx")
        export(model, probe, 17)
        load_from_export(model, source, probe)
    golden = np.load(os.path.join(args.models, f"{args.family}.golden_logits.npy"))
    ti, _ = load_split(False)
    model.eval()
    with torch.no_grad():
        logits = model(preprocess(ti[:16])).numpy()
    err = float(np.abs(logits - golden).max())
    if err > 1e-4:
        raise SystemExit(f"{args.family}: weights read back give logits {err:.2e} from the golden ones")
    with open(os.path.join(args.models, f"{args.family}.json")) as f:
        record = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    for opset in args.opsets:
        path = os.path.join(args.out, f"{args.family}.opset{opset}.onnx")
        export(model, path, opset)
        add_metadata(path, args.family, "main", record)
        print(f"wrote {path} ({os.path.getsize(path)/1e6:.1f} MB); weights match golden logits to {err:.1e}")


def cmd_deit_tiny(args):
    """A DeiT-Tiny-shaped ViT for compile-time benchmarks: 224x224, patch 16 (196 patches + class
    token = 197 tokens), dim 192, depth 12, 3 heads, MLP 768, 1000 classes, random weights
    (seeded), exported at opset 17; plus `--calib` uint8 RGB images [N,224,224,3] (Fashion-MNIST
    training images upscaled), which the compiler preprocesses with the ImageNet mean/std
    recorded in the model's metadata. Neither is committed (~22 MB and ~38 MB)."""
    import onnx
    torch.manual_seed(args.seed)
    model = VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=3, hidden_dim=192,
                              mlp_dim=768, num_classes=1000)
    model.eval()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "deit_tiny_random.opset17.onnx")
    dummy = torch.zeros(1, 3, 224, 224)
    with torch.enable_grad():
        torch.onnx.export(model, dummy, path, opset_version=17, input_names=["pixel_values"], output_names=["logits"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
    m = onnx.load(path)
    for k, v in {"onnxvitq.preprocess.size": "224", "onnxvitq.preprocess.channels": "3",
                 "onnxvitq.preprocess.mean": "0.485,0.456,0.406", "onnxvitq.preprocess.std": "0.229,0.224,0.225",
                 "onnxvitq.family": "deit-tiny-shaped", "onnxvitq.variant": "random"}.items():
        p = m.metadata_props.add(); p.key = k; p.value = v
    onnx.save(m, path)
    print(f"wrote {path} ({os.path.getsize(path)/1e6:.1f} MB)")
    xi, _ = load_split(True)
    rng = np.random.RandomState(args.seed)
    pick = rng.choice(len(xi), args.calib, replace=False)
    small = torch.from_numpy(xi[pick].astype(np.float32)).unsqueeze(1)
    big = F.interpolate(small, size=(224, 224), mode="bilinear", align_corners=False).clamp(0, 255).round().to(torch.uint8)
    images = big.squeeze(1).unsqueeze(-1).expand(-1, -1, -1, 3).contiguous().numpy()
    save_npy(os.path.join(args.out, f"deit_tiny_calib_{args.calib}_u8.npy"), images)


def save_npy(path, array):
    np.save(path, np.ascontiguousarray(array))
    print(f"wrote {path} {array.dtype} {array.shape} ({os.path.getsize(path)/1e6:.1f} MB)")


def cmd_data(args):
    rng = np.random.RandomState(1234)
    xi, _ = load_split(True)
    ti, tl = load_split(False)
    os.makedirs(args.out, exist_ok=True)
    calib = rng.choice(len(xi), args.calib, replace=False)
    save_npy(os.path.join(args.out, f"calib_{args.calib}.npy"), preprocess(xi[calib]).numpy())
    # Evaluation images stay uint8 (the CLI applies the models' preprocessing), balanced classes.
    per_class = args.eval // 10
    idx = np.concatenate([rng.choice(np.where(tl == c)[0], per_class, replace=False) for c in range(10)])
    idx.sort()
    save_npy(os.path.join(args.out, f"eval_{args.eval}_images_u8.npy"), ti[idx])
    save_npy(os.path.join(args.out, f"eval_{args.eval}_labels.npy"), tl[idx].astype(np.int64))
    write_pngs(args)


def cmd_unlabelled(args):
    """Test-split images outside the evaluation subset, uint8, without labels: the unlabelled images
    from where the model will be used that a user has plenty of. `--recipe auto` scores recipes on
    them (held out after the calibration samples). Training-split images were tried first and
    measured worse for choosing a recipe: the models fit their training images, so fewer of them
    sit near a decision boundary where quantization flips the class."""
    rng = np.random.RandomState(1234)
    xi, _ = load_split(True)
    ti, tl = load_split(False)
    rng.choice(len(xi), args.calib, replace=False)  # the same draws as `data`, in order
    per_class = args.eval // 10
    evaluated = np.concatenate([rng.choice(np.where(tl == c)[0], per_class, replace=False) for c in range(10)])
    rest = np.setdiff1d(np.arange(len(ti)), evaluated)
    pick = np.sort(np.random.RandomState(4321).choice(rest, args.count, replace=False))
    os.makedirs(args.out, exist_ok=True)
    save_npy(os.path.join(args.out, f"unlabelled_{args.count}_images_u8.npy"), ti[pick])


def cmd_test_split(args):
    """The whole test split, uint8, in file order (it contains the committed eval_2000 images):
    for comparisons whose differences the 2000-image subset cannot resolve. Not committed."""
    ti, tl = load_split(False)
    os.makedirs(args.out, exist_ok=True)
    save_npy(os.path.join(args.out, f"test_{len(tl)}_images_u8.npy"), ti)
    save_npy(os.path.join(args.out, f"test_{len(tl)}_labels.npy"), tl.astype(np.int64))


def write_pngs(args):
    """A few real test images as PNG files, for the image-folder calibration path."""
    from PIL import Image
    ti, tl = load_split(False)
    folder = os.path.join(args.out, "png")
    os.makedirs(folder, exist_ok=True)
    for i in range(args.pngs):
        Image.fromarray(ti[i], mode="L").save(os.path.join(folder, f"{i:04d}_{tl[i]}.png"))
    print(f"wrote {args.pngs} PNG images to {folder}")


def cmd_constant_nodes(args):
    """Rewrites an export the way paddle2onnx and tf2onnx store weights: every initializer becomes
    a Constant node (same output name, the tensor in its 'value'), placed first, and the graph has
    no initializers; the producer name says which convention it copies. Same computation."""
    import onnx
    from onnx import helper
    m = onnx.load(args.model)
    g = m.graph
    constants = []
    for t in g.initializer:
        constants.append(helper.make_node("Constant", [], [t.name], name=f"Constant_{t.name}", value=t))
    names = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in names]
    del g.input[:]
    g.input.extend(inputs)
    del g.initializer[:]
    nodes = constants + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    m.producer_name = "onnxvitq-zoo (paddle2onnx/tf2onnx Constant-node weights)"
    onnx.checker.check_model(m)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    onnx.save(m, args.out)
    print(f"wrote {args.out}: {len(constants)} initializers as Constant nodes")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("family", choices=sorted(CONFIGS))
    t.add_argument("--variant", choices=["main", "alt"], default="main")
    t.add_argument("--name")
    t.add_argument("--minutes", type=float, default=25)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--keep-checkpoint", action="store_true")
    t.add_argument("--out", default="models")
    e = sub.add_parser("export")
    e.add_argument("family", choices=sorted(CONFIGS))
    e.add_argument("--variant", choices=["main", "alt"], default="main")
    e.add_argument("--name")
    e.add_argument("--out", default="models")
    d = sub.add_parser("data")
    d.add_argument("--calib", type=int, default=512)
    d.add_argument("--eval", type=int, default=2000)
    d.add_argument("--pngs", type=int, default=16)
    d.add_argument("--out", default="models/data")
    u = sub.add_parser("unlabelled")
    u.add_argument("--calib", type=int, default=512, help="size of the calibration subset drawn by `data` (the draws are replayed)")
    u.add_argument("--eval", type=int, default=2000, help="size of the evaluation subset to stay out of")
    u.add_argument("--count", type=int, default=2048)
    u.add_argument("--out", default="models/data")
    t2 = sub.add_parser("deit-tiny")
    t2.add_argument("--calib", type=int, default=256)
    t2.add_argument("--seed", type=int, default=0)
    t2.add_argument("--out", default="/tmp/onnxvitq-deit-tiny")
    ts = sub.add_parser("test-split")
    ts.add_argument("--out", default="/tmp/onnxvitq-test")
    i = sub.add_parser("pngs")
    i.add_argument("--pngs", type=int, default=16)
    i.add_argument("--out", default="models/data")
    rx = sub.add_parser("reexport")
    rx.add_argument("family", choices=sorted(CONFIGS))
    rx.add_argument("--opsets", type=int, nargs="+", default=[9, 11])
    rx.add_argument("--models", default="models")
    rx.add_argument("--out", default="models/exports")
    cn = sub.add_parser("constant-nodes")
    cn.add_argument("model")
    cn.add_argument("out")
    args = p.parse_args()
    {"train": cmd_train, "export": cmd_export, "data": cmd_data, "pngs": write_pngs, "deit-tiny": cmd_deit_tiny, "unlabelled": cmd_unlabelled, "test-split": cmd_test_split,
     "constant-nodes": cmd_constant_nodes, "reexport": cmd_reexport}[args.cmd](args)


if __name__ == "__main__":
    main()
