"""The local backend on a tiny randomly initialised Llama and a word-level tokenizer built here (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgmre.explain import ExplanationRequest
from pgmre.explain.backends.base import BackendUnavailable
from pgmre.explain.backends.local import BUNDLED_MODEL, LocalBackend, resolve_local_model
from pgmre.explain.prompts import get_template

WORDS = [
    "give",
    "a",
    "short",
    "encyclopedic",
    "definition",
    "of",
    "the",
    "entity",
    ".",
    "post",
    ":",
    "who",
    "or",
    "what",
    "is",
    "?",
    "paris",
    "london",
    "messi",
    "barcelona",
    "scores",
    "in",
    "city",
    "team",
    "club",
    "player",
    "river",
    "mars",
    "nasa",
    "rover",
    "landed",
    "on",
    "visit",
    "today",
    "with",
    "friends",
    "famous",
    "known",
    "for",
    "capital",
    "france",
    "england",
    "spain",
    "football",
    "planet",
    "agency",
    "space",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("tiny_llama")
    specials = ["[UNK]", "[PAD]", "<|im_start|>", "<|im_end|>", "system", "user", "assistant"]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(specials + WORDS))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )  # fmt: skip
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["[PAD]"], bos_token_id=None,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


REQUESTS = [
    ExplanationRequest("Messi", "Messi scores for Barcelona today"),
    ExplanationRequest("NASA", "NASA rover landed on Mars"),
    ExplanationRequest("Paris", "visit Paris with friends"),
    ExplanationRequest("London", "London is a famous city known for football and the river , visit today"),
    ExplanationRequest("Mars", "planet Mars"),
]


def test_batched_generation_matches_one_at_a_time(tiny_lm: Path) -> None:
    batched = LocalBackend(get_template("v1"), str(tiny_lm), max_new_tokens=6, batch_size=4, device="cpu")
    results = batched.explain(REQUESTS)
    single = LocalBackend(get_template("v1"), str(tiny_lm), max_new_tokens=6, batch_size=1, device="cpu")
    one_by_one = [single.explain([r])[0] for r in REQUESTS]
    assert [r.request for r in results] == REQUESTS  # order kept although batches are sorted by length
    assert [(r.text, r.error) for r in results] == [
        (r.text, r.error) for r in one_by_one
    ]  # left padding is right
    for result in results:
        assert result.ok or result.error.startswith("empty output")
        if result.ok:
            assert 1 <= result.tokens <= 6 and result.text == result.text.strip() and result.latency_s > 0
    assert any(r.ok for r in results)


def test_prompt_uses_chat_template_and_no_label(tiny_lm: Path) -> None:
    backend = LocalBackend(get_template("v1"), str(tiny_lm), max_new_tokens=2, device="cpu")
    backend.load()
    prompt = backend._prompt(REQUESTS[0])
    assert prompt.startswith("<|im_start|> system Give a short encyclopedic definition")
    assert "Who or what is Messi?" in prompt and prompt.endswith("<|im_start|> assistant ")
    assert backend._tokenizer.padding_side == "left"


def test_identity_is_known_without_loading(tiny_lm: Path) -> None:
    backend = LocalBackend(get_template("v2"), str(tiny_lm), max_new_tokens=12)
    assert (backend.name, backend.template) == ("local", "v2") and backend.model.startswith("weights:")
    assert backend.settings == {"max_new_tokens": 12, "decoding": "greedy"}
    assert backend._lm is None
    assert LocalBackend(get_template("v1")).model == BUNDLED_MODEL


def test_local_model_is_keyed_by_its_files_not_its_path(tmp_path: Path, tiny_lm: Path) -> None:
    import shutil

    model = LocalBackend(get_template("v1"), str(tiny_lm)).model
    moved = shutil.copytree(tiny_lm, tmp_path / "moved")
    assert LocalBackend(get_template("v1"), str(moved)).model == model
    weights = next(p for p in moved.iterdir() if p.suffix in (".safetensors", ".bin"))
    weights.write_bytes(weights.read_bytes()[:-8] + bytes(8))  # other weights under the same path
    assert LocalBackend(get_template("v1"), str(moved)).model != model
    hub = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert LocalBackend(get_template("v1"), hub).model == hub
    assert LocalBackend(get_template("v1"), None).model == BUNDLED_MODEL  # the committed artifact's key


def test_model_resolution(tmp_path: Path, tiny_lm: Path) -> None:
    assert resolve_local_model(str(tiny_lm)) == (str(tiny_lm), None)
    assert resolve_local_model("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        None,
    )
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_local_model(str(tmp_path)) == (str(tmp_path), "m.gguf")
    assert resolve_local_model(str(tmp_path / "m.gguf")) == (str(tmp_path), "m.gguf")


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    backend = LocalBackend(get_template("v1"), str(tmp_path / "nowhere"), device="cpu")
    with pytest.raises(BackendUnavailable, match="cannot load the local LM"):
        backend.explain(REQUESTS[:1])
