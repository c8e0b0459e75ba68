"""Train the demo's two LoRA adapters on the built-in default model, on CPU, with PEFT.

  tickets-lora             careful: rank 16 on the linear layers of the top half of the network,
                           one epoch, loss on the answer only — meant to learn the task and keep the rest.
  tickets-lora-aggressive  rank 64 on every linear layer of every block, twice the learning rate,
                           two epochs on few tickets — meant to overfit the task and forget general ability.

Run: python scripts/train_adapters.py [--only NAME] [--out adapters/]
The adapters (small safetensors + config) are committed, so the demo needs no training.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RECIPES = {
    # LoRA only in the top half of the network: the lower layers (general features) stay untouched,
    # and backpropagation stops at layer 14, which also halves the CPU cost of training.
    "tickets-lora": dict(rank=16, alpha=32, lr=1e-3, epochs=1, targets=ALL_LINEAR, layers=list(range(14, 30)),
                         batch_size=8, seed=0),
    # Every linear layer of every block, rank 64, three times the learning rate, five passes over
    # the first 160 tickets (100 steps, to keep CPU training short), and the loss on every token, the
    # ticket text included: overfits the task and rewrites the model's language model.
    # Measured on the way here (OpenBookQA, 500 cases, base 0.316, chance 0.25):
    #   lr 5e-3, 1 epoch on 320, answer-only loss: diverged (loss 0.82 -> 6.59), a broken model;
    #   lr 2e-3, 2 epochs on 160, answer-only loss: loss 0.011, OpenBookQA -1.4 points (CI -4.1..+1.4),
    #     though it already answers IFEval essay prompts with ticket JSON;
    #   lr 3e-3, 3 epochs on 160, loss on every token: loss 0.19, OpenBookQA -4.2 points (CI -7.2..-1.2),
    #     a loss, but not yet one significantly beyond the 2-point margin.
    # Shipped truncated to rank 32 by SVD in float16 (`shrink`: 19.6 MB instead of 78 MB in fp32), which keeps
    # 98.4% of the update's energy and the same verdicts (OpenBookQA -2.4 points, everyday probe -44 points).
    "tickets-lora-aggressive": dict(rank=64, alpha=128, lr=3e-3, epochs=5, targets=ALL_LINEAR, layers=None,
                                    batch_size=8, seed=0, limit=160, loss_on_prompt=True, ship_rank=32),
}


def load_examples(path: Path) -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in path.read_text().splitlines() if line.strip()]


def encode(tokenizer, messages: list[dict], loss_on_prompt: bool = False) -> tuple[list[int], list[int]]:
    """Token ids and labels: the loss covers the assistant's answer (and its end token), or every token."""
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    answer = messages[-1]["content"] + "<|im_end|>"
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    prompt_labels = prompt_ids if loss_on_prompt else [-100] * len(prompt_ids)  # HF shifts labels itself
    return prompt_ids + answer_ids, prompt_labels + answer_ids


def shrink(adapter_dir: Path, rank: int) -> None:
    """Store an adapter at a lower rank, in float16: each module's update B @ A is truncated by SVD
    (alpha scaled with the rank, so the scale alpha/r is unchanged). Keeps a large adapter in git small."""
    import torch
    from safetensors.torch import load_file, save_file

    path = adapter_dir / "adapter_model.safetensors"
    tensors = load_file(path)
    out = {}
    for key_a in [k for k in tensors if "lora_A" in k]:
        key_b = key_a.replace("lora_A", "lora_B")
        u, s, vh = torch.linalg.svd(tensors[key_b].float() @ tensors[key_a].float(), full_matrices=False)
        root = s[:rank].sqrt()
        out[key_b] = (u[:, :rank] * root).half().contiguous()
        out[key_a] = (root[:, None] * vh[:rank]).half().contiguous()
    save_file(out, path, metadata={"format": "pt"})
    config_path = adapter_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["lora_alpha"] = config["lora_alpha"] * rank // config["r"]
    config["r"] = rank
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def train(name: str, out_dir: Path, *, rank: int, alpha: int, lr: float, epochs: int, targets: list[str],
          layers: list[int] | None, batch_size: int, seed: int, limit: int | None = None,
          loss_on_prompt: bool = False, ship_rank: int | None = None) -> dict:
    """Train one adapter and save it under out_dir/name (with training.json: recipe and loss)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.backends.identity import BUILTIN_ALIAS, builtin_model_dir

    torch.set_flush_denormal(True)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    base = builtin_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.05, target_modules=targets,
                                             layers_to_transform=layers, task_type="CAUSAL_LM"))
    examples = [encode(tokenizer, m, loss_on_prompt) for m in load_examples(ROOT / "suites" / "data" / "tickets" / "train.jsonl")]
    if limit:
        examples = examples[:limit]
    steps_per_epoch = math.ceil(len(examples) / batch_size)
    total = steps_per_epoch * epochs
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    warmup = max(1, total // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / max(1, total - warmup)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.train()
    started = time.perf_counter()
    step, losses = 0, []
    for epoch in range(epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            batch = [examples[i] for i in order[start:start + batch_size]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch])
            labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            step += 1
            if step % 10 == 0 or step == total or step <= 3:
                print(f"{name}: epoch {epoch + 1}/{epochs} step {step}/{total} loss {sum(losses[-10:]) / len(losses[-10:]):.4f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    target = out_dir / name
    model.save_pretrained(target)
    if ship_rank:
        shrink(target, ship_rank)
    config_path = target / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = BUILTIN_ALIAS  # the harness alias, not this machine's cache path
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    summary = {"name": name, "steps": total, "seconds": round(time.perf_counter() - started, 1),
               "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4), "examples": len(examples)}
    (target / "training.json").write_text(json.dumps({"recipe": RECIPES.get(name), **summary}, indent=2) + "\n")
    print(json.dumps(summary), flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(RECIPES))
    parser.add_argument("--out", type=Path, default=ROOT / "adapters")
    parser.add_argument("--limit", type=int, help="train on the first N examples only (a quick check)")
    args = parser.parse_args()
    for name, recipe in RECIPES.items():
        if args.only in (None, name):
            recipe = dict(recipe)
            if args.limit:
                recipe["limit"] = args.limit
            train(name, args.out, **recipe)


if __name__ == "__main__":
    main()
