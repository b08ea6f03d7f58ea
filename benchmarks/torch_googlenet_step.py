"""PyTorch reference for ``bench_train_step.py``: torchvision GoogLeNet train step, images/s.

    python3 benchmarks/torch_googlenet_step.py --batch_size 128 --input_size 227 --precision bf16

The step: torchvision ``googlenet`` (random init, no auxiliary heads, its
``fc`` replaced by a 512-d linear embedding) on P×2 batches (``batch/2``
classes, each twice) → N-pair loss (Sohn 2016, eq. 6: softmax cross-entropy
of anchor·positive similarities, + 0.002 · mean ‖f‖²) → Adam (lr 1e-4, head
10×). ``--precision bf16`` wraps forward and loss in
``torch.autocast(dtype=bfloat16)``. ``cudnn.benchmark`` is on.

With ``--serve``, it builds and warms the step once, then reads a step count
per line on stdin and answers each with one line of images/s, so
``bench_train_step.py --torch`` can alternate its rounds with the Keras ones
(side by side in one run). Needs PyTorch + torchvision (not a symm_keras
dependency; the GPU machine has them).
"""

import argparse
import sys
import time


def build_step(batch_size, input_size, precision, embedding_dim, device):
    import torch
    import torchvision

    torch.backends.cudnn.benchmark = True
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    model.fc = torch.nn.Linear(1024, embedding_dim)
    model = model.to(device).train()
    head = list(model.fc.parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    optimizer = torch.optim.Adam([{"params": body, "lr": 1e-4}, {"params": head, "lr": 1e-3}])
    generator = torch.Generator(device="cpu").manual_seed(0)
    images = (torch.randn(batch_size, 3, input_size, input_size, generator=generator) * 50.0).to(device)
    targets = torch.arange(batch_size // 2, device=device)
    autocast_dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]

    def npair_loss(embeddings):
        anchors, positives = embeddings[0::2].float(), embeddings[1::2].float()
        logits = anchors @ positives.T
        l2 = (anchors.square().sum(1).mean() + positives.square().sum(1).mean()) / 2
        return torch.nn.functional.cross_entropy(logits, targets) + 0.002 * l2

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = npair_loss(model(images))
        loss.backward()
        optimizer.step()
        return loss

    return step


def images_per_second(step, steps, batch_size):
    import torch

    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--input_size", type=int, default=227)
    parser.add_argument("--embedding_dim", type=int, default=512)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help="answer step counts read from stdin")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("torch_googlenet_step.py: no CUDA device for PyTorch")
    step = build_step(args.batch_size, args.input_size, args.precision, args.embedding_dim, "cuda")
    images_per_second(step, args.warmup, args.batch_size)
    if not args.serve:
        print(f"torch {torch.__version__} googlenet {args.precision}: "
              f"{images_per_second(step, args.steps, args.batch_size):.1f} img/s")
        return
    print("ready", flush=True)
    for line in sys.stdin:
        print(f"{images_per_second(step, int(line), args.batch_size):.3f}", flush=True)


if __name__ == "__main__":
    main()
