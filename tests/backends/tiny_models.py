"""Tiny random-weight causal LMs of the architectures people fine-tune, built from configs at test time
(no download), with a small offline BPE tokenizer that has a BOS token and a chat template; saved to a
folder so that the backend loads them as it loads a user's local model.

`ARCHITECTURES` names one config per row of the conformance matrix (docs/backends.md). Window sizes are
chosen shorter than the few-shot prompts of the matrix, so the sliding-window rows exercise the window.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

WINDOW = 24  # sliding attention window of the sliding-window rows: shorter than every few-shot prompt

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL = ["<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
WORDS = ("the a an one two three four five six seven eight nine ten red blue green cat dog sea sky sun "
         "capital France Paris Rome Italy what is answer question yes no please word short poem count number "
         "colour grass apple tree river city name say hello world plus minus equals terse assistant brief").split()

_COMMON = dict(vocab_size=None, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=512, initializer_range=0.2, tie_word_embeddings=False)

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "llama-mha": dict(model_type="llama", **_COMMON, num_key_value_heads=4),
    "llama-gqa": dict(model_type="llama", **_COMMON, num_key_value_heads=2),
    "llama-mqa": dict(model_type="llama", **_COMMON, num_key_value_heads=1),
    "mistral-sliding": dict(model_type="mistral", **_COMMON, num_key_value_heads=2, sliding_window=WINDOW),
    "qwen2-sliding": dict(model_type="qwen2", **_COMMON, num_key_value_heads=2, use_sliding_window=True,
                          sliding_window=WINDOW, max_window_layers=1),
    "qwen3": dict(model_type="qwen3", **_COMMON, num_key_value_heads=2, head_dim=16),
    "gemma2-softcap-sliding": dict(model_type="gemma2", **_COMMON, num_key_value_heads=2, head_dim=16,
                                   sliding_window=WINDOW, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                                   query_pre_attn_scalar=16),
    "gemma3-sliding": dict(model_type="gemma3_text", **_COMMON, num_key_value_heads=2, head_dim=16,
                           sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"],
                           query_pre_attn_scalar=16),
    "phi3": dict(model_type="phi3", **_COMMON, num_key_value_heads=2),
    "gpt2": dict(model_type="gpt2", vocab_size=None, n_embd=64, n_layer=2, n_head=4, n_positions=512,
                 initializer_range=0.2, tie_word_embeddings=False),
    "granite": dict(model_type="granite", **_COMMON, num_key_value_heads=2, logits_scaling=4.0,
                    embedding_multiplier=2.0, residual_multiplier=0.5, attention_multiplier=0.2),
    "cohere": dict(model_type="cohere", **_COMMON, num_key_value_heads=2, logit_scale=0.5),
    "falcon-alibi": dict(model_type="falcon", vocab_size=None, hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=4, alibi=True, initializer_range=0.2, tie_word_embeddings=False),
    "bloom-alibi": dict(model_type="bloom", vocab_size=None, hidden_size=64, n_layer=2, n_head=4,
                        initializer_range=0.2, tie_word_embeddings=False),
    "deepseek_v3-mla": dict(model_type="deepseek_v3", **{**_COMMON, "intermediate_size": 96},
                            num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16,
                            qk_rope_head_dim=8, v_head_dim=8, n_routed_experts=4, num_experts_per_tok=2,
                            n_shared_experts=1, moe_intermediate_size=32, first_k_dense_replace=1, n_group=1,
                            topk_group=1),
}


def corpus(n: int = 2000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + rng.choice([".", "?", "!"])
            for _ in range(n)]


_TRAINED: dict[str, Any] = {}


def build_tokenizer(folder: Path) -> Any:
    """A byte-level BPE tokenizer (~400 tokens) trained on generated text, with BOS/EOS and a chat template
    (trained once per process, saved into `folder`)."""
    if "tokenizer" not in _TRAINED:
        _TRAINED["tokenizer"] = _train_tokenizer()
    _TRAINED["tokenizer"].save_pretrained(folder)
    return _TRAINED["tokenizer"]


def _train_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   additional_special_tokens=SPECIAL[3:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(name: str, folder: Path, *, generation: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """Save architecture `name` (random weights, float32) with the tokenizer into `folder`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    settings = dict(ARCHITECTURES[name])
    model_type = settings.pop("model_type")
    settings["vocab_size"] = len(tokenizer) + 8  # room for a token a model type's tokenizer class adds
    settings.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.eos_token_id)
    config = AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # norms at 1 + noise and biases non-zero: no layer is an identity by accident
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(torch.randn_like(param) * 0.1)
    model.generation_config.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                   pad_token_id=tokenizer.eos_token_id, do_sample=False, temperature=None,
                                   top_p=None, top_k=None, **(generation or {}))
    model.save_pretrained(folder)
    return folder


def build_adapter(model_dir: Path, folder: Path, *, seed: int = 1) -> Path:
    """A LoRA adapter on the model in `model_dir` with random non-zero B (it changes outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules="all-linear")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for pname, param in peft_model.named_parameters():
            if "lora_B" in pname:
                param.normal_(0, 0.3)
    peft_model.save_pretrained(folder)
    return folder
