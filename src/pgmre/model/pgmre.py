"""The PG-MRE network (Zhang et al., AAAI 2025): APM, RPM, fusion and classifier.

Equation numbers refer to the paper's Method section; ``docs/method.md`` lists every equation, where it
lives here, and how the ambiguous ones are read. Modules switched off by the ablation flags are not
built at all, so a variant's parameters are exactly those of the modules it uses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import safetensors.torch
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from pgmre.config import ModelConfig
from pgmre.model.layers import MLP, CrossAttention, Projection, ResidualCrossAttention, masked_mean
from pgmre.model.prototypes import EMAVectorQuantizer
from pgmre.runfiles import RunLoadError, checkpoint_fix, describe

log = logging.getLogger(__name__)

CONFIG_NAME = "pgmre_config.json"
WEIGHTS_NAME = "model.safetensors"
ENCODER_PREFIX = "text_encoder."
ExplanationEncoder = Literal["shared", "frozen"]


def checkpoint_fingerprint(directory: str | Path) -> str:
    """Identify the model a checkpoint directory holds: its ``pgmre_config.json`` and ``model.safetensors``,
    each by :func:`~pgmre.encoders.feature_cache.weights_fingerprint` (size, first and last MiB)."""
    from pgmre.encoders.feature_cache import content_key, weights_fingerprint

    parts = [weights_fingerprint(Path(directory) / name) for name in (CONFIG_NAME, WEIGHTS_NAME)]
    return content_key(" ".join(parts))[:16]


class Guidance(NamedTuple):
    """What eqs. (9)-(10) attend to, and which samples of the batch may not see it."""

    c_all: Tensor  # C_all' [B, d]
    words: Tensor  # C_W [B, 2, Le, d] (head, tail)
    word_mask: Tensor  # [B, 2, Le]
    hidden: Tensor | None  # [B] bool: explanation dropout and/or the batch's explanations_hidden; None: none


@dataclass
class PGMREOutput:
    logits: Tensor  # [B, num_labels]
    loss: Tensor | None  # ce_loss + vq_loss, when labels are given
    ce_loss: Tensor | None  # eq. (22)
    vq_loss: Tensor  # commitment losses of the prototype banks (0 without APM/RPM)
    attr_ids: Tensor | None  # [B] attribute prototype of each sample (APM on)
    rel_ids: Tensor | None  # [B] relation prototype of each sample (RPM on)
    fused: Tensor  # [B, d] F_final, eq. (20)


def _build_text_encoder(text_encoder: str | PretrainedConfig) -> PreTrainedModel:
    """Pretrained weights from a directory or hub id, or a freshly initialised model from a config."""
    model: PreTrainedModel
    if isinstance(text_encoder, PretrainedConfig):
        model = AutoModel.from_config(text_encoder)
    else:
        model = AutoModel.from_pretrained(text_encoder)
    return model.float()


def _require(batch: Mapping[str, Any], key: str, why: str) -> Tensor:
    if key not in batch or batch[key] is None:
        raise KeyError(f"batch is missing {key!r} (needed by {why})")
    value: Tensor = batch[key]
    return value


class PGMRE(nn.Module):
    """Text encoder + APM + RPM + fusion + classifier; see the module docstring.

    ``text_encoder``: a directory or hub id to load pretrained weights from, or a ``PretrainedConfig``
    to build the encoder without weights (what :meth:`from_pretrained` does). ``vocab_size``: resize
    the embeddings (the entity-marker tokens). ``explanation_encoder``: ``shared`` runs this model's
    encoder on the explanation tokens; ``frozen`` takes precomputed states of width
    ``explanation_dim`` (default: the encoder width). ``num_visual_slots``: 1+m, checked against the
    batch when given; 1 builds no object-level branch. ``use_phrases``: the batch carries per-sample
    phrases (``text.phrases``, TMR/CAMIM's published protocol) that the visual slots attend to and whose
    summed token states join MLP_final's input (docs/method.md, "Phrases"). ``use_caption_tokens``: the
    batch carries the image caption's tokens, whose fine-tuned encoder states replace the image slot as
    F_V (``visual.captions.image_tokens``; docs/method.md, "Caption tokens as F_V").
    """

    #: the fingerprint of the ``pgmre_config.json`` and ``model.safetensors`` :meth:`from_pretrained`
    #: read (:func:`checkpoint_fingerprint`); None for a model built in memory
    fingerprint: str | None = None

    def __init__(
        self,
        cfg: ModelConfig,
        text_encoder: str | PretrainedConfig,
        num_labels: int,
        visual_dim: int,
        vocab_size: int | None = None,
        explanation_encoder: ExplanationEncoder = "shared",
        num_visual_slots: int | None = None,
        explanation_dim: int | None = None,
        use_phrases: bool = False,
        use_caption_tokens: bool = False,
    ) -> None:
        super().__init__()
        if explanation_encoder not in ("shared", "frozen"):
            raise ValueError(f"explanation_encoder must be 'shared' or 'frozen', got {explanation_encoder!r}")
        if num_visual_slots is not None and num_visual_slots < 1:
            raise ValueError("num_visual_slots counts the image slot too: it must be >= 1")
        self.cfg = cfg
        self.num_labels = num_labels
        self.visual_dim = visual_dim
        self.explanation_encoder: ExplanationEncoder = explanation_encoder
        self.num_visual_slots = num_visual_slots
        self.use_phrases = use_phrases
        self.use_caption_tokens = use_caption_tokens

        self.text_encoder: PreTrainedModel = _build_text_encoder(text_encoder)
        embeddings = self.text_encoder.get_input_embeddings()
        if vocab_size is not None and vocab_size != embeddings.num_embeddings:
            self.text_encoder.resize_token_embeddings(vocab_size)
        width = int(self.text_encoder.config.hidden_size)
        d = cfg.d_model or width
        if d % cfg.num_heads:
            raise ValueError(f"num_heads={cfg.num_heads} must divide the hidden size d={d}")
        self.d_model = d
        self.explanation_dim = explanation_dim or width
        p = cfg.dropout

        # T_W and T_S are brought to d when d differs from the encoder width.
        self.text_proj: nn.Module = nn.Linear(width, d) if d != width else nn.Identity()
        self.entity_proj = nn.Linear(2 * width, d) if cfg.text_pooling == "entity_markers" else None

        self.expl_proj: nn.Module | None = None
        self.explanation_mlp: MLP | None = None
        self.attr_quantizer: EMAVectorQuantizer | None = None
        if cfg.use_explanations:
            if explanation_encoder == "frozen" and self.explanation_dim != d:
                self.expl_proj = nn.Linear(self.explanation_dim, d)
            self.explanation_mlp = MLP(2 * d, d, d, p)  # eq. (4)
            if cfg.use_apm:
                self.attr_quantizer = self._quantizer(cfg.num_attr_prototypes, d)  # eq. (3)

        self.visual_proj: Projection | None = None
        self.guide_image: ResidualCrossAttention | None = None
        self.guide_objects: ResidualCrossAttention | None = None
        self.rel_quantizer: EMAVectorQuantizer | None = None
        self.fuse_image: CrossAttention | None = None
        self.fuse_objects: CrossAttention | None = None
        self.caption_proj: Projection | None = None
        if use_caption_tokens and not cfg.use_visual:
            raise ValueError("use_caption_tokens feeds the visual branch: it needs cfg.use_visual")
        if cfg.use_visual:
            has_objects = num_visual_slots is None or num_visual_slots > 1
            self.visual_proj = Projection(visual_dim, d, p)
            if use_caption_tokens:
                self.caption_proj = Projection(d, d, p)  # the caption's T_W-like states -> F_V
            if cfg.use_explanations:
                gated = cfg.guidance_gate
                self.guide_image = ResidualCrossAttention(d, cfg.num_heads, p, gated)  # eq. (9)
                if has_objects:
                    self.guide_objects = ResidualCrossAttention(d, cfg.num_heads, p, gated)  # eq. (10)
            if cfg.use_rpm:
                self.rel_quantizer = self._quantizer(cfg.num_rel_prototypes, 2 * d)  # eq. (12)
            self.fuse_image = CrossAttention(d, cfg.num_heads, p)  # eq. (17)
            if has_objects:
                self.fuse_objects = CrossAttention(d, cfg.num_heads, p)  # eq. (18)

        # P_S: the phrase's summed token states, projected (CAMIM's coarse-grained text feature).
        self.phrase_proj = nn.Linear(d, d) if use_phrases else None
        # Inputs of MLP_final: [M ; T_S] (eq. 20); [T_S] text-only; [T_S ; C_all'] explanations without
        # images; each with P_S appended when phrases are used.
        parts = 1 + int(cfg.use_visual) + int(cfg.use_explanations and not cfg.use_visual) + int(use_phrases)
        self.mlp_final = MLP(parts * d, d, d, p)  # eq. (20)
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(d, num_labels)  # eq. (21)
        self.train()  # HF loads the encoder in eval mode; start consistent, like any new nn.Module

    def _quantizer(self, num_prototypes: int, dim: int) -> EMAVectorQuantizer:
        return EMAVectorQuantizer(
            num_prototypes,
            dim,
            decay=self.cfg.ema_decay,
            commitment_weight=self.cfg.commitment_weight,
            dead_steps=self.cfg.dead_prototype_steps,
            init=self.cfg.prototype_init,
            refresh_steps=self.cfg.prototype_refresh_steps,
        )

    # ------------------------------------------------------------------ forward

    def forward(self, batch: Mapping[str, Any]) -> PGMREOutput:
        words, word_mask, sentence = self._encode_text(batch)
        phrase_sum: Tensor | None = None
        if self.phrase_proj is not None:
            phrase_words, phrase_mask = self._encode_phrases(batch)
            phrase_sum = self.phrase_proj(
                (phrase_words * phrase_mask[..., None].to(phrase_words.dtype)).sum(1)
            )
            # the visual slots attend to the post's words and the phrase's (eqs. 17-18)
            words = torch.cat([words, phrase_words], dim=1)
            word_mask = torch.cat([word_mask, phrase_mask], dim=1)
        vq_losses: list[Tensor] = []
        attr_ids: Tensor | None = None
        rel_ids: Tensor | None = None

        guidance: Guidance | None = None
        if self.explanation_mlp is None and batch.get("explanations_hidden") is not None:
            raise ValueError("explanations_hidden given, but this model was built without explanations")
        if self.explanation_mlp is not None:
            c_words, c_word_mask, c_sentence = self._encode_explanations(batch)  # eq. (2)
            c_all = self.explanation_mlp(c_sentence.flatten(1))  # eq. (4): MLP([C_H_S ; C_T_S])
            if self.attr_quantizer is not None:
                q = self.attr_quantizer(c_all)  # eqs. (5)-(7): nearest attribute prototype, straight-through
                c_all, attr_ids = q.quantized, q.indices
                vq_losses.append(q.loss)
            guidance = Guidance(c_all, c_words, c_word_mask, self._hidden_explanations(batch, len(c_all)))

        parts = [sentence]
        if self.visual_proj is not None:
            m, rel_ids, rel_loss = self._visual_branch(batch, words, word_mask, guidance)
            if rel_loss is not None:
                vq_losses.append(rel_loss)
            parts = [m, sentence]  # eq. (20): [M ; T_S]
        elif guidance is not None:
            c_all, hidden = guidance.c_all, guidance.hidden
            parts = [sentence, c_all if hidden is None else c_all.masked_fill(hidden[:, None], 0.0)]
        if phrase_sum is not None:
            parts.append(phrase_sum)
        fused = self.mlp_final(torch.cat(parts, dim=-1))  # eq. (20)
        logits = self.classifier(self.dropout(fused))  # eq. (21), softmax inside the loss

        vq_loss = torch.stack(vq_losses).sum() if vq_losses else logits.new_zeros(())
        ce_loss = loss = None
        labels = batch.get("labels")
        if labels is not None:
            ce_loss = F.cross_entropy(logits.float(), labels.long())  # eq. (22)
            loss = ce_loss + vq_loss
        return PGMREOutput(logits, loss, ce_loss, vq_loss, attr_ids, rel_ids, fused)

    def _visual_branch(
        self,
        batch: Mapping[str, Any],
        words: Tensor,
        word_mask: Tensor,
        guidance: Guidance | None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Eqs. (1), (9)-(19): visual slots guided by C_all', relation prototypes, fusion with T_W -> M."""
        assert self.visual_proj is not None and self.fuse_image is not None
        feats = _require(batch, "visual_feats", "use_visual")
        mask = _require(batch, "visual_mask", "use_visual").bool()
        if self.num_visual_slots is not None and feats.shape[1] != self.num_visual_slots:
            raise ValueError(
                f"visual_feats has {feats.shape[1]} slots, the model was built for {self.num_visual_slots}"
            )
        f = self.visual_proj(feats.to(self.classifier.weight.dtype))
        f_v, f_o = f[:, :1], f[:, 1:]  # eq. (1): F_I = {F_V, F_O}
        mask_v, mask_o = mask[:, :1], mask[:, 1:]
        if self.caption_proj is not None:
            f_v, mask_v = self._encode_caption_tokens(batch, mask_v)
            mask = torch.cat([mask_v, mask_o], dim=1)
        has_objects = self.fuse_objects is not None and f_o.shape[1] > 0

        r_v, r_o = f_v, f_o  # Base: the visual features themselves enter the fusion
        if guidance is not None:
            assert self.guide_image is not None
            keys, key_mask = self._guidance_keys(guidance)
            r_v = self.guide_image(f_v, keys, key_mask)  # eq. (9)
            if has_objects and self.guide_objects is not None:
                r_o = self.guide_objects(f_o, keys, key_mask)  # eq. (10)

        rel_ids = rel_loss = None
        if self.rel_quantizer is not None:
            r = torch.cat([masked_mean(r_v, mask_v), masked_mean(r_o, mask_o)], dim=-1)  # eq. (11)
            q = self.rel_quantizer(r, mask=mask.any(1))  # eqs. (13)-(14), straight-through as eq. (7)
            rel_ids, rel_loss = q.indices, q.loss
            r_prime_v, r_prime_o = q.quantized.split(self.d_model, dim=-1)
            r_v = r_v + r_prime_v[:, None]  # eq. (15)
            r_o = r_o + r_prime_o[:, None]  # eq. (16)

        m_v, _ = self.fuse_image(r_v, words, word_mask)  # eq. (17)
        m = masked_mean(m_v + r_v, mask_v)  # eq. (19), image level
        if has_objects and self.fuse_objects is not None:
            m_o, _ = self.fuse_objects(r_o, words, word_mask)  # eq. (18)
            m = m + masked_mean(m_o + r_o, mask_o)  # eq. (19), object level
        return m, rel_ids, rel_loss

    def _hidden_explanations(self, batch: Mapping[str, Any], batch_size: int) -> Tensor | None:
        """The samples whose explanations are hidden: the batch's ``explanations_hidden`` ([B] bool, any
        mode; probes what a model reads from them) OR'ed with the training draw of ``model.explanation_dropout``.
        """
        device = self.classifier.weight.device
        given = batch.get("explanations_hidden")
        if given is not None:
            given = torch.as_tensor(given, device=device)
            if given.dtype != torch.bool:
                raise ValueError(f"explanations_hidden must be a bool tensor, got {given.dtype}")
            if given.shape != (batch_size,):
                raise ValueError(
                    f"explanations_hidden has shape {tuple(given.shape)}, expected ({batch_size},)"
                )
        drawn = self._draw_explanation_dropout(batch_size, device)
        if given is None:
            return drawn
        return given if drawn is None else given | drawn

    def _draw_explanation_dropout(self, batch_size: int, device: torch.device) -> Tensor | None:
        """Training only: each sample hides its explanations with probability ``model.explanation_dropout``."""
        p = self.cfg.explanation_dropout
        if not self.training or p <= 0:
            return None
        return torch.rand(batch_size, device=device) < p

    def _guidance_keys(self, guidance: Guidance) -> tuple[Tensor, Tensor]:
        """Keys/values of eqs. (9)-(10): C_all' alone (literal) or [C_all' ; C_H_W ; C_T_W] (with_words).

        A sample whose explanations are ``hidden`` gets no key at all: its visual slots pass as LayerNorm(F).
        """
        c = guidance.c_all[:, None]
        always = torch.ones(c.shape[:2], dtype=torch.bool, device=c.device)
        if self.cfg.rpm_attention == "literal":
            keys, mask = c, always
        else:
            keys = torch.cat([c, guidance.words.flatten(1, 2)], dim=1)
            mask = torch.cat([always, guidance.word_mask.flatten(1)], dim=1)
        return keys, mask if guidance.hidden is None else mask & ~guidance.hidden[:, None]

    def _encode_text(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """T_W [B, L, d], its mask, and T_S [B, d] per ``text_pooling``."""
        ids = _require(batch, "input_ids", "the text encoder")
        mask = _require(batch, "attention_mask", "the text encoder")
        out = self.text_encoder(input_ids=ids, attention_mask=mask)
        hidden = out.last_hidden_state
        words = self.text_proj(hidden)
        if self.entity_proj is not None:
            rows = torch.arange(len(ids), device=ids.device)
            head = hidden[rows, _require(batch, "head_index", "text_pooling=entity_markers").long()]
            tail = hidden[rows, _require(batch, "tail_index", "text_pooling=entity_markers").long()]
            sentence = self.entity_proj(torch.cat([head, tail], dim=-1))
        elif self.cfg.text_pooling == "cls":
            sentence = words[:, 0]
        else:
            sentence = self.text_proj(self._pooled(out))
        return words, mask.bool(), sentence

    def _encode_phrases(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        """P_W [B, Lp, d] and its mask: the phrases through the fine-tuned text encoder, as TMR/CAMIM do."""
        ids = _require(batch, "phrase_input_ids", "text.phrases")
        mask = _require(batch, "phrase_attention_mask", "text.phrases")
        out = self.text_encoder(input_ids=ids, attention_mask=mask)
        return self.text_proj(out.last_hidden_state), mask.bool()

    def _encode_caption_tokens(self, batch: Mapping[str, Any], image_mask: Tensor) -> tuple[Tensor, Tensor]:
        """F_V [B, Lc, d] from the image caption's tokens through the fine-tuned encoder, and its mask.

        A sample whose image slot is empty (no caption found) keeps no F_V token at all, as before.
        """
        ids = _require(batch, "caption_input_ids", "visual.captions.image_tokens")
        mask = _require(batch, "caption_attention_mask", "visual.captions.image_tokens")
        assert self.caption_proj is not None
        out = self.text_encoder(input_ids=ids, attention_mask=mask)
        return self.caption_proj(self.text_proj(out.last_hidden_state)), mask.bool() & image_mask

    @staticmethod
    def _pooled(out: Any) -> Tensor:
        """The pooler output (the paper's sentence-level feature); the [CLS] state for encoders without one."""
        pooled = getattr(out, "pooler_output", None)
        result: Tensor = pooled if pooled is not None else out.last_hidden_state[:, 0]
        return result

    def _encode_explanations(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """C_W [B, 2, Le, d], its mask [B, 2, Le], C_S [B, 2, d] (head, tail)."""
        why = f"use_explanations with explanation_encoder={self.explanation_encoder}"
        mask = _require(batch, "expl_attention_mask", why)
        if mask.dim() != 3 or mask.shape[1] != 2:
            raise ValueError(f"expl_attention_mask must be [B, 2, Le] (head, tail), got {tuple(mask.shape)}")
        b, _, le = mask.shape
        if self.explanation_encoder == "shared":
            ids = _require(batch, "expl_input_ids", why)
            out = self.text_encoder(input_ids=ids.reshape(2 * b, le), attention_mask=mask.reshape(2 * b, le))
            states = self.text_proj(out.last_hidden_state).reshape(b, 2, le, self.d_model)
            pooled = self.text_proj(self._pooled(out)).reshape(b, 2, self.d_model)
        else:
            dtype = self.classifier.weight.dtype
            states = _require(batch, "expl_states", why).to(dtype)
            pooled = _require(batch, "expl_pooled", why).to(dtype)
            if self.expl_proj is not None:
                states, pooled = self.expl_proj(states), self.expl_proj(pooled)
        if self.cfg.explanation_pooling == "mean":
            weights = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(2) / weights.sum(2).clamp(min=1)
        return states, mask.bool(), pooled

    # ------------------------------------------------------------------ parameter groups and logging

    def named_encoder_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The pretrained text encoder (names start with ``text_encoder.``)."""
        return ((n, p) for n, p in self.named_parameters() if n.startswith(ENCODER_PREFIX))

    def named_head_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Everything initialised from scratch: projections, APM/RPM attention, fusion, classifier."""
        return ((n, p) for n, p in self.named_parameters() if not n.startswith(ENCODER_PREFIX))

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        return (p for _, p in self.named_encoder_parameters())

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return (p for _, p in self.named_head_parameters())

    def prototype_stats(self, reset: bool = True) -> dict[str, Any]:
        """Training-time usage and perplexity of each prototype bank since the last call."""
        banks = {"attr": self.attr_quantizer, "rel": self.rel_quantizer}
        return {name: bank.stats(reset) for name, bank in banks.items() if bank is not None}

    def guidance_gates(self) -> dict[str, float]:
        """tanh(g) of each gated guidance block (``model.guidance_gate``): how much explanation is let in."""
        blocks = {"image": self.guide_image, "objects": self.guide_objects}
        return {
            name: round(float(torch.tanh(block.gate.detach())), 4)
            for name, block in blocks.items()
            if block is not None and block.gate is not None
        }

    # ------------------------------------------------------------------ persistence

    def init_kwargs(self) -> dict[str, Any]:
        """Everything besides the encoder config needed to rebuild this module (JSON-able)."""
        return {
            "cfg": self.cfg.model_dump(mode="json"),
            "num_labels": self.num_labels,
            "visual_dim": self.visual_dim,
            "explanation_encoder": self.explanation_encoder,
            "num_visual_slots": self.num_visual_slots,
            "explanation_dim": self.explanation_dim,
            "use_phrases": self.use_phrases,
            "use_caption_tokens": self.use_caption_tokens,
        }

    def save_pretrained(self, directory: str | Path) -> None:
        """``pgmre_config.json`` (constructor arguments + the encoder's HF config) and ``model.safetensors``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"format": "pgmre", "version": 1, **self.init_kwargs()}
        meta["text_encoder_config"] = self.text_encoder.config.to_dict()
        (path / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))
        safetensors.torch.save_model(self, str(path / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> PGMRE:
        """Rebuild from the saved configs (no hub, no original encoder directory) and load all weights.

        A missing or damaged ``pgmre_config.json`` / ``model.safetensors`` raises
        :class:`~pgmre.runfiles.RunLoadError` naming the file (and the run's other checkpoint, if any)."""
        path = Path(directory)
        fix = checkpoint_fix(path)
        previous = path.with_name(path.name + ".old")
        if not path.is_dir() and previous.is_dir():  # a save cut between its two renames
            log.warning("%s: its save was interrupted; reading the previous complete one, %s", path, previous)
            path = previous
        if not path.is_dir():
            raise RunLoadError(path, "no such checkpoint directory", fix)
        config_file, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
        for needed in (config_file, weights):
            if not needed.is_file():
                raise RunLoadError(needed, "missing (not a complete saved PG-MRE model)", fix)
        try:
            model = cls._from_meta(json.loads(config_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as err:
            raise RunLoadError(config_file, f"damaged model config ({describe(err)})", fix) from err
        try:
            safetensors.torch.load_model(model, str(weights), strict=True, device=str(device))
        except (OSError, SafetensorError, RuntimeError, ValueError) as err:  # truncated, or not this model's
            raise RunLoadError(
                weights, f"damaged weights, or weights that do not fit {CONFIG_NAME} ({describe(err)})", fix
            ) from err
        model.fingerprint = checkpoint_fingerprint(path)
        return model.to(device).eval()

    @classmethod
    def _from_meta(cls, meta: dict[str, Any]) -> PGMRE:
        """An untrained model shaped as ``pgmre_config.json`` says."""
        saved = dict(meta.pop("text_encoder_config"))
        encoder_config = AutoConfig.for_model(saved.pop("model_type"), **saved)
        return cls(
            ModelConfig.model_validate(meta["cfg"]),
            encoder_config,
            num_labels=meta["num_labels"],
            visual_dim=meta["visual_dim"],
            explanation_encoder=meta["explanation_encoder"],
            num_visual_slots=meta["num_visual_slots"],
            explanation_dim=meta["explanation_dim"],
            use_phrases=meta.get("use_phrases", False),
            use_caption_tokens=meta.get("use_caption_tokens", False),
        )
