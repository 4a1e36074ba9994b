"""The PG-MRE network on a tiny randomly initialised BERT: variants, masking, persistence, learning."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from transformers import BertConfig, BertModel

from pgmre.config import ModelConfig
from pgmre.model import PGMRE, VARIANTS, variant_overrides
from pgmre.model.layers import CrossAttention

VOCAB, HIDDEN, VISUAL_DIM, NUM_LABELS = 64, 32, 12, 4
B, L, LE, OBJECTS = 6, 10, 7, 3


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tiny tensors on a shared 2-core machine: one thread is ~10x faster than contended two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer BERT (with pooler) saved like a pretrained checkpoint."""
    directory = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(directory)
    return directory


def make_config(variant: str = "full", **overrides: Any) -> ModelConfig:
    fields: dict[str, Any] = {"num_heads": 4, "num_attr_prototypes": 3, "num_rel_prototypes": 3}
    return ModelConfig.model_validate(fields | variant_overrides(variant) | overrides)


def make_model(encoder_dir: Path, variant: str = "full", seed: int = 0, **kwargs: Any) -> PGMRE:
    model_kwargs = {
        k: kwargs.pop(k)
        for k in list(kwargs)
        if k in ("explanation_encoder", "explanation_dim", "num_visual_slots")
    }
    torch.manual_seed(seed)
    return PGMRE(make_config(variant, **kwargs), str(encoder_dir), NUM_LABELS, VISUAL_DIM, **model_kwargs)


def make_batch(seed: int = 0, n: int = B) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    text_mask = torch.ones(n, L, dtype=torch.long)
    text_mask[:, L - 3 :] = 0
    expl_mask = torch.ones(n, 2, LE, dtype=torch.long)
    expl_mask[:, :, LE - 2 :] = 0
    visual_mask = torch.ones(n, 1 + OBJECTS, dtype=torch.bool)
    visual_mask[0, 2:] = False
    return {
        "input_ids": torch.randint(5, VOCAB, (n, L), generator=g),
        "attention_mask": text_mask,
        "head_index": torch.full((n,), 1),
        "tail_index": torch.full((n,), 4),
        "expl_input_ids": torch.randint(5, VOCAB, (n, 2, LE), generator=g),
        "expl_attention_mask": expl_mask,
        "visual_feats": torch.randn(n, 1 + OBJECTS, VISUAL_DIM, generator=g),
        "visual_mask": visual_mask,
        "labels": torch.randint(0, NUM_LABELS, (n,), generator=g),
    }


def logits(model: PGMRE, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(batch).logits


def test_every_variant_runs_and_returns_its_prototype_ids(encoder_dir: Path) -> None:
    batch = make_batch()
    for variant in VARIANTS:
        model = make_model(encoder_dir, variant)
        out = model(batch)
        assert out.logits.shape == (B, NUM_LABELS) and out.fused.shape == (B, HIDDEN)
        assert out.loss is not None and out.ce_loss is not None
        assert torch.allclose(out.loss, out.ce_loss + out.vq_loss)
        overrides = variant_overrides(variant)
        assert (out.attr_ids is not None) == overrides["use_apm"]
        assert (out.rel_ids is not None) == overrides["use_rpm"]
        out.loss.backward()


def _keys(model: PGMRE) -> set[str]:
    return set(model.state_dict())


def _removed(bigger: PGMRE, smaller: PGMRE) -> set[str]:
    assert _keys(smaller) <= _keys(bigger)
    return {key.split(".")[0] for key in _keys(bigger) - _keys(smaller)}


def test_each_ablation_switch_removes_exactly_its_module(encoder_dir: Path) -> None:
    models = {variant: make_model(encoder_dir, variant) for variant in VARIANTS}
    assert _removed(models["full"], models["ent-rpm"]) == {"attr_quantizer"}
    assert _removed(models["full"], models["ent-apm"]) == {"rel_quantizer"}
    assert _removed(models["ent-apm"], models["ent"]) == {"attr_quantizer"}
    assert _removed(models["ent-rpm"], models["ent"]) == {"rel_quantizer"}
    assert _removed(models["ent"], models["base"]) == {"explanation_mlp", "guide_image", "guide_objects"}
    assert _removed(models["base"], models["text-only"]) == {"visual_proj", "fuse_image", "fuse_objects"}
    # prototype banks are momentum-updated buffers, never optimiser parameters
    assert not any(name.split(".")[0].endswith("quantizer") for name, _ in models["full"].named_parameters())


def test_straight_through_gradient_reaches_the_apm_mlp_not_the_prototypes(encoder_dir: Path) -> None:
    # no RPM/visual path and no commitment loss: C_all' (quantised) is the MLP's only way to the loss
    model = make_model(encoder_dir, "ent-apm", use_visual=False, commitment_weight=0.0)
    out = model(make_batch())
    assert out.vq_loss.item() == 0.0 and out.ce_loss is not None
    out.ce_loss.backward()
    assert model.explanation_mlp is not None and model.attr_quantizer is not None
    grad = model.explanation_mlp.dense_in.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.attr_quantizer.prototypes.grad is None


def test_padding_gets_zero_attention_weight() -> None:
    torch.manual_seed(0)
    attention = CrossAttention(8, 2, dropout=0.0)
    keys_mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    _, weights = attention(torch.randn(2, 3, 8), torch.randn(2, 4, 8), keys_mask, return_weights=True)
    assert weights is not None
    assert torch.all(weights[~keys_mask[:, None, :].expand_as(weights)] == 0)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3))


def test_padded_tokens_and_masked_slots_do_not_change_the_prediction(encoder_dir: Path) -> None:
    model = make_model(encoder_dir, "full", text_pooling="cls")
    batch = make_batch()
    reference = logits(model, batch)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["input_ids"][batch["attention_mask"] == 0] = 3
    changed["expl_input_ids"][batch["expl_attention_mask"] == 0] = 3
    changed["visual_feats"][~batch["visual_mask"]] = 1e3
    assert torch.allclose(logits(model, changed), reference, atol=1e-5)
    changed["visual_feats"][batch["visual_mask"]] += 1.0  # a real slot does matter
    assert not torch.allclose(logits(model, changed), reference, atol=1e-5)


def test_fully_masked_visual_slots_give_no_nan(encoder_dir: Path) -> None:
    model = make_model(encoder_dir, "full")
    batch = make_batch()
    batch["visual_mask"][:3] = False
    out = model(batch)
    assert torch.isfinite(out.logits).all() and out.loss is not None and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_literal_attention_ignores_explanation_words_with_words_uses_them(encoder_dir: Path) -> None:
    def frozen_batch() -> dict[str, torch.Tensor]:
        batch = make_batch()
        batch["expl_states"] = torch.randn(B, 2, LE, 20)
        batch["expl_pooled"] = torch.randn(B, 2, 20)
        return batch

    for mode, sensitive in (("literal", False), ("with_words", True)):
        model = make_model(
            encoder_dir, "full", rpm_attention=mode, explanation_encoder="frozen", explanation_dim=20
        )
        assert model.expl_proj is not None  # 20 -> d
        batch = frozen_batch()
        reference = logits(model, batch)
        batch["expl_states"][:, :, 0] += 1.0  # the first word of each explanation (unpadded)
        assert torch.allclose(logits(model, batch), reference, atol=1e-6) != sensitive


def test_entity_marker_pooling_reads_the_marker_positions(encoder_dir: Path) -> None:
    model = make_model(encoder_dir, "text-only", text_pooling="entity_markers")
    batch = make_batch()
    reference = logits(model, batch)
    batch["head_index"] = torch.full((B,), 2)
    assert not torch.allclose(logits(model, batch), reference)


def test_d_model_projects_text_visual_and_explanations(encoder_dir: Path) -> None:
    model = make_model(encoder_dir, "full", d_model=16)
    out = model(make_batch())
    assert out.fused.shape == (B, 16)
    assert model.attr_quantizer is not None and model.attr_quantizer.prototypes.shape == (3, 16)
    assert model.rel_quantizer is not None and model.rel_quantizer.prototypes.shape == (3, 32)


def test_save_and_load_round_trip_without_the_original_encoder(encoder_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "encoder"
    shutil.copytree(encoder_dir, source)
    torch.manual_seed(0)
    model = PGMRE(
        make_config("full", text_pooling="entity_markers"),
        str(source),
        NUM_LABELS,
        VISUAL_DIM,
        vocab_size=VOCAB + 4,
        num_visual_slots=1 + OBJECTS,
    )
    model.train()
    model(make_batch(seed=1))  # initialise and move the prototype banks
    model.save_pretrained(tmp_path / "saved")
    shutil.rmtree(source)
    loaded = PGMRE.from_pretrained(tmp_path / "saved")
    assert not loaded.training
    assert loaded.text_encoder.get_input_embeddings().num_embeddings == VOCAB + 4
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    batch = make_batch(seed=2)
    out, out_loaded = model.eval()(batch), loaded(batch)
    assert torch.equal(out.logits, out_loaded.logits)
    assert out.attr_ids is not None and out_loaded.attr_ids is not None
    assert torch.equal(out.attr_ids, out_loaded.attr_ids)


def test_fixed_seed_gives_identical_outputs(encoder_dir: Path) -> None:
    batch = make_batch()

    def train_step(seed: int) -> torch.Tensor:
        model = make_model(encoder_dir, "full", seed=seed)
        torch.manual_seed(seed)
        out = model(batch)  # training mode: dropout and k-means++ seeding draw random numbers
        assert out.loss is not None
        out.loss.backward()
        grad = model.classifier.weight.grad
        assert grad is not None
        return torch.cat([out.logits.detach().flatten(), grad.flatten()])

    assert torch.equal(train_step(0), train_step(0))
    assert not torch.equal(train_step(0), train_step(1))


def test_parameter_groups_split_encoder_from_new_modules(encoder_dir: Path) -> None:
    model = make_model(encoder_dir, "full")
    encoder = dict(model.named_encoder_parameters())
    head = dict(model.named_head_parameters())
    assert encoder and head and not set(encoder) & set(head)
    assert set(encoder) | set(head) == {n for n, _ in model.named_parameters()}
    assert all(n.startswith("text_encoder.") for n in encoder)
    norms = [n for n in head if "LayerNorm" in n]
    assert norms and all(n.endswith(("LayerNorm.weight", "LayerNorm.bias")) for n in norms)
    assert len(list(model.encoder_parameters())) == len(encoder)


def test_prototype_stats_for_logging(encoder_dir: Path) -> None:
    model = make_model(encoder_dir, "full")
    model(make_batch())
    stats = model.prototype_stats()
    assert set(stats) == {"attr", "rel"}
    assert sum(stats["attr"]["usage"]) == B and sum(stats["rel"]["usage"]) == B
    assert 1.0 <= stats["attr"]["perplexity"] <= 3.0


def test_input_errors_are_explicit(encoder_dir: Path) -> None:
    model = make_model(encoder_dir, "full", num_visual_slots=2)
    with pytest.raises(ValueError, match="slots"):
        model(make_batch())
    frozen = make_model(encoder_dir, "ent", explanation_encoder="frozen")
    with pytest.raises(KeyError, match="expl_states"):
        frozen(make_batch())
    with pytest.raises(ValueError, match="num_heads"):
        make_model(encoder_dir, "full", num_heads=5)


def test_variant_overrides_are_valid_configs() -> None:
    for variant in VARIANTS:
        ModelConfig.model_validate(variant_overrides(variant))
        # on a config that trains with explanation dropout, the variants that read explanations keep it
        with_dropout = ModelConfig.model_validate({"explanation_dropout": 0.5} | variant_overrides(variant))
        assert with_dropout.explanation_dropout == (0.5 if with_dropout.use_explanations else 0.0)
    with pytest.raises(ValueError, match="unknown model variant"):
        variant_overrides("apm-only")
    with pytest.raises(ValidationError, match="use_rpm needs visual"):
        ModelConfig.model_validate({"use_visual": False, "use_apm": False})


def test_tiny_full_model_overfits_a_synthetic_set(encoder_dir: Path) -> None:
    """32 random sentences whose label is the keyword token they contain; random images."""
    n = 32
    batch = make_batch(seed=3, n=n)
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(n) % NUM_LABELS
    positions = torch.randint(0, L - 3, (n,), generator=g)
    batch["input_ids"][torch.arange(n), positions] = labels + 1  # keyword ids 1..4, elsewhere >= 5
    batch["labels"] = labels
    model = make_model(encoder_dir, "full", dropout=0.0, text_pooling="cls")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(80):
        out = model(batch)
        assert out.loss is not None
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    predictions = logits(model, batch).argmax(-1)
    assert (predictions == labels).float().mean().item() == 1.0


def test_mean_explanation_pooling_replaces_the_pooler_by_the_masked_token_mean(encoder_dir: Path) -> None:
    batch = make_batch()
    batch["expl_states"] = torch.randn(B, 2, LE, 20)
    batch["expl_pooled"] = torch.randn(B, 2, 20)
    pooler = make_model(encoder_dir, "ent", explanation_encoder="frozen", explanation_dim=20)
    mean = make_model(
        encoder_dir, "ent", explanation_encoder="frozen", explanation_dim=20, explanation_pooling="mean"
    )
    mean.load_state_dict(pooler.state_dict())  # same weights: only C_S differs
    states, mask, pooled = mean.eval()._encode_explanations(batch)
    weights = batch["expl_attention_mask"].unsqueeze(-1).float()
    expected = (states * weights).sum(2) / weights.sum(2)
    assert torch.allclose(pooled, expected, atol=1e-6)

    reference = logits(mean, batch)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["expl_pooled"] += 5.0  # ignored by mean pooling, used by the pooler
    changed["expl_states"][batch["expl_attention_mask"] == 0] = 1e3  # padding: ignored by both
    assert torch.allclose(logits(mean, changed), reference, atol=1e-5)
    assert not torch.allclose(logits(pooler, changed), logits(pooler, batch), atol=1e-5)

    shared = make_model(encoder_dir, "ent", explanation_pooling="mean").eval()
    states, mask, pooled = shared._encode_explanations(batch)
    weights = mask.unsqueeze(-1).float()
    assert torch.allclose(pooled, (states * weights).sum(2) / weights.sum(2), atol=1e-6)


def test_guidance_gate_starts_closed_and_opens_with_training(encoder_dir: Path) -> None:
    """Gated +Ent ignores the explanations at initialisation and learns to use them."""
    model = make_model(encoder_dir, "ent", guidance_gate=True)
    assert model.guide_image is not None and model.guide_image.gate is not None
    batch, other = make_batch(seed=0), make_batch(seed=0)
    other["expl_input_ids"] = make_batch(seed=1)["expl_input_ids"]
    assert torch.allclose(logits(model, batch), logits(model, other), atol=1e-6)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    loss = model(batch).loss
    assert loss is not None
    loss.backward()
    assert model.guide_image.gate.grad is not None and model.guide_image.gate.grad.abs() > 0
    assert model.guidance_gates() == {"image": 0.0, "objects": 0.0}
    optimizer.step()
    assert not torch.allclose(logits(model, batch), logits(model, other), atol=1e-6)
    assert all(abs(value) > 0 for value in model.guidance_gates().values())
    ungated = make_model(encoder_dir, "ent")
    assert ungated.guide_image is not None and ungated.guide_image.gate is None
    assert ungated.guidance_gates() == {}
    assert not torch.allclose(logits(ungated, batch), logits(ungated, other), atol=1e-6)


@pytest.mark.parametrize(
    "variant, extra",
    [
        ("ent", {}),
        ("full", {}),
        ("ent-rpm", {"rpm_attention": "literal"}),
        ("full", {"guidance_gate": True}),
        ("full", {"explanation_encoder": "frozen", "explanation_dim": 20}),
        ("ent", {"use_visual": False}),
    ],
    # without the APM where C_all' is all that reaches the output: untrained prototypes would snap
    # both explanations of a swap to the same vector
    ids=["ent", "full", "ent-rpm-literal", "full-gated", "full-frozen", "ent-novisual"],
)
def test_explanations_hidden_hides_exactly_the_marked_samples(
    encoder_dir: Path, variant: str, extra: dict[str, Any]
) -> None:
    """A hidden sample's output ignores its explanations; the other samples of the batch still use theirs.

    Explanation dropout builds the same mask from its draw (``_hidden_explanations``), so this covers
    the paths a dropped sample takes in training, without the draw's randomness.
    """
    model = make_model(encoder_dir, variant, **extra)
    for block in (model.guide_image, model.guide_objects):
        if block is not None and block.gate is not None:
            block.gate.data.fill_(1.0)  # a closed gate would hide every explanation
    hidden = torch.arange(B) % 2 == 0
    batch, other = make_batch(seed=0), make_batch(seed=0)
    other["expl_input_ids"] = make_batch(seed=1)["expl_input_ids"]
    for inputs in (batch, other):
        g = torch.Generator().manual_seed(len(inputs) + (inputs is other))
        inputs["expl_states"] = torch.randn(B, 2, LE, 20, generator=g)
        inputs["expl_pooled"] = torch.randn(B, 2, 20, generator=g)
        inputs["explanations_hidden"] = hidden  # the same masks as a training step's draw

    # eval mode: no dropout, no EMA updates
    changed = (logits(model, batch) - logits(model, other)).abs().amax(1) > 1e-6
    assert torch.equal(changed, ~hidden)


def test_explanation_dropout_draws_only_in_training(encoder_dir: Path) -> None:
    """About p of the samples are hidden per training step; evaluation and p = 0 hide none."""
    model = make_model(encoder_dir, "full", explanation_dropout=0.3)
    model.train()
    torch.manual_seed(0)
    hidden = model._draw_explanation_dropout(20_000, torch.device("cpu"))
    assert hidden is not None and abs(hidden.float().mean().item() - 0.3) < 0.02
    given = torch.zeros(20_000, dtype=torch.bool)
    given[:100] = True
    both = model._hidden_explanations({"explanations_hidden": given}, 20_000)
    assert both is not None and bool(both[:100].all()) and abs(both[100:].float().mean().item() - 0.3) < 0.02
    model.eval()
    assert model._draw_explanation_dropout(20_000, torch.device("cpu")) is None
    assert model._hidden_explanations({}, 8) is None
    assert torch.equal(model._hidden_explanations({"explanations_hidden": given}, 20_000), given)
    with pytest.raises(ValueError, match="explanations_hidden has shape"):
        model._hidden_explanations({"explanations_hidden": given}, 8)
    with pytest.raises(ValueError, match="must be a bool tensor"):
        model._hidden_explanations({"explanations_hidden": given.float()}, 20_000)
    with pytest.raises(ValueError, match="built without explanations"):
        make_model(encoder_dir, "base").eval()({**make_batch(seed=0), "explanations_hidden": given[:B]})
    without_dropout = make_model(encoder_dir, "full").train()
    assert without_dropout._draw_explanation_dropout(8, torch.device("cpu")) is None

    batch, other = make_batch(seed=0), make_batch(seed=0)
    other["expl_input_ids"] = make_batch(seed=1)["expl_input_ids"]
    changed = (logits(model, batch) - logits(model, other)).abs().amax(1) > 1e-6
    assert bool(changed.all())  # evaluation sees every sample's explanations


def test_explanation_dropout_needs_explanations() -> None:
    with pytest.raises(ValidationError, match="explanation_dropout needs entity explanations"):
        make_config("base", explanation_dropout=0.5)
