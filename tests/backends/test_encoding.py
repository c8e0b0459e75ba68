"""The one encode convention (harness/backends/base.py): raw-text log-likelihoods are scored exactly as
lm-eval's `hf` model scores them, for a tokenizer that adds BOS, one that does not, and either with
lm-eval's `add_bos_token` set either way. Differential: lm-eval's own `simple_evaluate` (`hf` model on a
tiny random-weight Llama saved to a temp dir, trained-offline BPE tokenizer) against a harness run of the
same lm-eval task (transformers backend), item for item."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest

os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_CACHE", str(Path(tempfile.gettempdir()) / "harness-test-hf-datasets"))

from harness.backends.base import (  # noqa: E402
    LoglikelihoodRequest,
    encode_chat_pair,
    encode_raw_pair,
    scoring_tokenizer,
    split_trailing_whitespace,
)
from harness.config.suite import load_suite  # noqa: E402
from harness.config.variants import load_models  # noqa: E402
from harness.engine.cache import GenerationCache  # noqa: E402
from harness.engine.runner import RunOptions, run_suites  # noqa: E402
from tests.helpers import REPO, write  # noqa: E402
from tests.tiny_model import build_llama  # noqa: E402

TASKS = REPO / "suites" / "lm_eval"
N = 40
CASES = [  # (the tokenizer adds BOS, add_bos_token)
    (True, None),
    (False, None),
    (False, True),
    (True, False),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-llama")
    return {adds: build_llama(root / ("bos" if adds else "nobos"), adds_bos=adds, seed=1) for adds in (True, False)}


def _lm_eval(model: Path, add_bos_token: bool | None):
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.tasks import TaskManager

    args = f"pretrained={model},dtype=float32" + ("" if add_bos_token is None else f",add_bos_token={add_bos_token}")
    with contextlib.chdir(TASKS):
        results = simple_evaluate(model="hf", model_args=args, device="cpu", batch_size=16,
                                  tasks=["openbookqa_local"],
                                  task_manager=TaskManager(include_path=str(TASKS), include_defaults=False),
                                  limit=N, log_samples=True, bootstrap_iters=0)
    return results["results"]["openbookqa_local"], {s["doc_id"]: s for s in results["samples"]["openbookqa_local"]}


def _harness(tmp_path: Path, model: Path, add_bos_token: bool | None):
    engine = 'dtype = "float32"' + ("" if add_bos_token is None else f", add_bos_token = {str(add_bos_token).lower()}")
    models = write(tmp_path / "models.toml", f"""
        [defaults]
        model = "{model}"
        backend = "transformers"
        engine = {{ {engine} }}

        [variants.base]
    """)
    suite = write(tmp_path / "suites" / "general.yaml", f"""
        suite: general
        lm_eval:
          tasks: [{os.path.relpath(TASKS / 'openbookqa.yaml', tmp_path / 'suites')}]
          limit: {N}
        variants: [base]
    """)
    return run_suites([load_suite(suite)], load_models(models),
                      RunOptions(out_root=tmp_path / "runs", progress=False),
                      cache=GenerationCache(tmp_path / "cache.sqlite"), log=lambda m: None)


@pytest.mark.parametrize(("adds_bos", "add_bos_token"), CASES)
def test_raw_text_scoring_equals_lm_eval_hf_model_item_for_item(models, tmp_path, adds_bos, add_bos_token):
    from transformers import AutoTokenizer

    model = models[adds_bos]
    tokenizer = scoring_tokenizer(AutoTokenizer.from_pretrained(model), add_bos_token)
    ctx, _ = encode_raw_pair(tokenizer, "The sun is", " hot", add_bos_token)
    with_bos = add_bos_token if add_bos_token is not None else adds_bos
    assert (ctx[0] == tokenizer.bos_token_id) == with_bos  # the case really differs in its BOS

    aggregate, samples = _lm_eval(model, add_bos_token)
    result = _harness(tmp_path, model, add_bos_token)
    assert not result.errors
    ours = {int(r["case_id"].split("/")[1]): r for r in result.records}
    assert sorted(ours) == sorted(samples) and len(ours) == N
    for doc_id, sample in samples.items():
        record = ours[doc_id]
        theirs = [resp[0] for resp in sample["filtered_resps"]]
        assert record["choice_logprobs"] == pytest.approx(theirs, abs=1e-4), doc_id
        assert record["checks"]["retention"]["acc"]["score"] == sample["acc"], doc_id
        assert record["checks"]["retention"]["acc_norm"]["score"] == sample["acc_norm"], doc_id
    results = result.manifest["runs"]["general/base"]["lm_eval"]["tasks"]["openbookqa_local"]["results"]
    assert results["acc,none"] == pytest.approx(aggregate["acc,none"], abs=1e-12)
    assert results["acc_norm,none"] == pytest.approx(aggregate["acc_norm,none"], abs=1e-12)


@pytest.mark.parametrize(("adds_bos", "add_bos_token"), CASES)
def test_encode_raw_pair_equals_lm_evals_hflm_encoding(models, adds_bos, add_bos_token):
    """Token for token against HFLM's own encoding, edge cases included (newline and BOS-string contexts,
    an empty context)."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    kwargs = {} if add_bos_token is None else {"add_bos_token": add_bos_token}
    lm = HFLM(pretrained=str(models[adds_bos]), dtype="float32", device="cpu", **kwargs)
    tokenizer = scoring_tokenizer(AutoTokenizer.from_pretrained(models[adds_bos]), add_bos_token)
    pairs = [("The sun is", " hot"), ("Question: what is light?\nAnswer:", " energy"), ("Question:\n\n", "the sun"),
             ("<s>The moon", " is"), ("a", "b c d"), ("Which plant ", " grows")]
    for context, continuation in pairs:
        assert encode_raw_pair(tokenizer, context, continuation, add_bos_token) == lm._encode_pair(context, continuation)
    # An empty context: conditioned on lm-eval's prefix token (TemplateLM.loglikelihood).
    cont = lm.tok_encode(" the moon", add_special_tokens=False)
    assert encode_raw_pair(tokenizer, "", " the moon", add_bos_token) == ([lm.prefix_token_id], cont)


def test_chat_contexts_keep_the_templates_tokens_and_raw_whitespace_moves_as_in_lm_eval(models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models[True])
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                             add_generation_prompt=True)
    ctx, cont = encode_chat_pair(tokenizer, rendered, "the sun")
    # No BOS added to a chat prompt (the template decides), and its final newline stays in the context.
    assert ctx == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(cont) == "the sun"
    assert split_trailing_whitespace("Q:\n ", "A") == ("Q:", "\n A")
    assert split_trailing_whitespace("Q:", " A") == ("Q:", " A")
    request = LoglikelihoodRequest(context=((("content", "Hi"), ("role", "user")),), continuation="x")
    assert request.is_chat


def test_the_vllm_and_transformers_backends_share_the_one_encoding(models):
    """Both backends' `_encode_pair` is `base.encode_pair` (vLLM itself is not needed to check that)."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from harness.backends import EngineSpec, freeze
    from harness.backends.transformers.backend import TransformersBackend
    from harness.backends.vllm import VLLMBackend

    tokenizer = AutoTokenizer.from_pretrained(models[False])

    def render(messages):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    requests = [LoglikelihoodRequest(context="The sun is\n", continuation="hot"),
                LoglikelihoodRequest(context=((("content", "Hi"), ("role", "user")),), continuation=" the sun")]
    for add_bos_token in (None, True):
        spec = EngineSpec(model="m", backend="vllm", engine=freeze({} if add_bos_token is None else
                                                                    {"add_bos_token": add_bos_token}))
        one = SimpleNamespace(tokenizer=tokenizer, render=render, spec=spec)
        two = SimpleNamespace(tokenizer=tokenizer, render=render, spec=spec)
        for request in requests:
            assert VLLMBackend._encode_pair(one, request) == TransformersBackend._encode_pair(two, request)
        raw = scoring_tokenizer(tokenizer, add_bos_token)
        assert VLLMBackend._encode_pair(one, requests[0]) == encode_raw_pair(raw, "The sun is\n", "hot", add_bos_token)
    assert tokenizer("x")["input_ids"] == tokenizer("x", add_special_tokens=False)["input_ids"]  # not changed


def test_the_openai_backend_splits_text_by_the_same_rule_and_refuses_add_bos_token():
    from harness.backends import EngineSpec, create_backend, freeze
    from harness.backends.openai import OpenAIBackend
    from harness.errors import BackendError

    request = LoglikelihoodRequest(context="Question: what?\nAnswer:\n", continuation="the sun")
    assert OpenAIBackend._split(request) == split_trailing_whitespace(request.context, request.continuation)
    assert OpenAIBackend._split(request) == ("Question: what?\nAnswer:", "\nthe sun")
    spec = EngineSpec(model="m", backend="openai", engine=freeze({"add_bos_token": True}),
                      options=freeze({"base_url": "http://127.0.0.1:9/v1"}))
    with pytest.raises(BackendError, match="add_bos_token cannot be applied by the openai backend"):
        create_backend(spec)


def test_a_non_boolean_add_bos_token_is_a_clear_error(models):
    from harness.backends.base import PairEncoder
    from harness.errors import BackendError

    with pytest.raises(BackendError, match="add_bos_token must be true or false"):
        PairEncoder(None, None, "yes")
